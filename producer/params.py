"""Sweep parameters as ``wandb agent`` passes them: ``--<instance>_<key>=<value>`` arguments."""

from __future__ import annotations

from typing import Any

from pipeline.errors import SweepError
from pipeline.schedule import Override


def parse_extra_args(args: list[str]) -> dict[str, str]:
    """``["--a_b=1", "--c", "2"]`` → ``{"a_b": "1", "c": "2"}``; values stay text (the mapping
    parses them as YAML scalars). Anything not shaped like an option is an error."""
    params: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise SweepError(f"unexpected argument {arg!r}: sweep parameters look like "
                             "--<instance>_<key>=<value>")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise SweepError(f"sweep parameter --{name} has no value: pass --{name}=<value>")
            value = args[i + 1]
            i += 1
        params[name] = value
        i += 1
    return params


def apply_sweep_params(params: dict[str, Any], schedule: Any, run_settings: dict[str, Any]
                       ) -> tuple[list[Override], dict[str, Any]]:
    """Schedule overrides and recorded parameters for ``params``; run settings the sweep sets
    (epochs, lr, precision) are written into ``run_settings``.

    The mapping itself is the sweep module's (``pipeline.search.mapping.map_params``).
    """
    from pipeline.search.mapping import map_params

    mapped = map_params(params, schedule)
    run_settings.update(mapped.run_settings)
    return mapped.overrides, mapped.params
