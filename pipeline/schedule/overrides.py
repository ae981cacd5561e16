"""Overrides from text: the one parser of ``<instance>.<key>=<value>`` (``--set``, sweep arguments).

Code builds ``Override`` values directly; text is turned into them here, at the edge, and
``pipeline.schedule.apply_overrides`` applies them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import yaml

from ..errors import ScheduleError
from ..yaml_input import safe_load
from .model import Override

#: Schedule-wide keys an override sets without naming an instance (``--set round_to=8``).
SCHEDULE_WIDE_KEYS = ("round_to", "cross_depth")


def parse_override(text: str) -> Override:
    """``"filter_pruner_70.desired_sparsity=0.5"`` (or ``"round_to=8"``) → ``Override``; the value
    is read as a YAML scalar (``0.5`` a float, ``[0, 2]`` a list, ``Filters`` a string)."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise ScheduleError(f"--set {text!r}: write <instance>.<key>=<value>, e.g. "
                            "filter_pruner_70.desired_sparsity=0.5")
    return _override(path.strip(), _yaml_scalar(value.strip(), text))


def parse_overrides(texts: Iterable[str]) -> list[Override]:
    """``parse_override`` of each text, in order."""
    return [parse_override(text) for text in texts]


def to_overrides(overrides: Iterable[Override | str] | Mapping[str, Any]) -> list[Override]:
    """Overrides given any way callers have: ``Override``s, ``--set`` strings, or a mapping of
    ``"<instance>.<key>"`` to a value (a string value is read as YAML, as on the command line)."""
    if isinstance(overrides, Mapping):
        return [_override(str(path), _yaml_scalar(value, str(path)) if isinstance(value, str) else value)
                for path, value in overrides.items()]
    return [item if isinstance(item, Override) else parse_override(item) for item in overrides]


def _override(path: str, value: Any) -> Override:
    instance, dot, key = path.partition(".")
    return Override(instance, key, value) if dot else Override(None, path, value)


def _yaml_scalar(text: str, where: str) -> Any:
    try:
        return safe_load(text) if text else ""
    except yaml.YAMLError:
        raise ScheduleError(f"--set {where}: the value {text!r} is not valid YAML: quote it") from None
