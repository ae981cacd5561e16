"""Sweep parameters onto the base schedule: ``<instance>_<key>`` → ``Override(instance, key, value)``.

Instance names contain underscores themselves (``filter_pruner_70``), so a parameter is matched
against the base schedule's instance names, longest first. A few names are reserved for run
settings instead (``model``, ``epochs``, ``lr``, ``lr_anneal``, ``precision``, ``kd_weight``,
``kd_temperature``),
and ``edgeprune`` holds our extension. ``model`` searches the pretrained network itself
(``resnet20_cifar`` ... ``resnet56_cifar``): the base schedule must fit every depth named, which
``cross_depth: true`` lets one ResNet56 schedule do (``pipeline.pruning.depths``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipeline.errors import ScheduleError, SweepError
from pipeline.schedule import SCHEDULE_WIDE_KEYS, Override, Schedule
from pipeline.yaml_input import safe_load

from .config import EXTENSION_PARAM, ParamSpec
from .space import UNBOUNDED, extreme_values

#: Sweep parameters that set the run rather than the schedule, with their type.
RUN_SETTINGS: dict[str, type] = {"model": str, "epochs": int, "lr": float, "lr_anneal": str, "precision": str,
                                  "kd_weight": float, "kd_temperature": float}
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")


@dataclass
class MappedParams:
    """One trial's parameters split into schedule overrides and run settings."""

    #: Schedule edits, for ``RunConfig.overrides``.
    overrides: list[Override] = field(default_factory=list)
    #: ``model``, ``epochs``, ``lr``, ``lr_anneal``, ``precision``, ``kd_weight``, ``kd_temperature`` when the
    #: sweep sets them.
    run_settings: dict[str, Any] = field(default_factory=dict)
    #: The parameters as given (extension removed), for ``RunConfig.params`` and the trial record.
    params: dict[str, Any] = field(default_factory=dict)

    def override_strings(self) -> list[str]:
        """The overrides as ``<instance>.<key>=<value>`` strings (the CLI's spelling, for display)."""
        return [str(o) for o in self.overrides]


def load_base_schedule(source: Path | str | Mapping[str, Any] | Schedule) -> Schedule:
    """A sweep's base schedule, every field checked; keys it leaves empty (null) are holes the
    sweep must fill (``Schedule.unset_keys``)."""
    from pipeline.pruning import load_schedule, schedule_from_data

    if isinstance(source, Schedule):
        return source
    if isinstance(source, Mapping):
        return schedule_from_data(dict(source), "schedule", partial=True)
    return load_schedule(source, partial=True)


def map_params(params: Mapping[str, Any], base_schedule: Path | str | Mapping[str, Any] | Schedule
               ) -> MappedParams:
    """Split ``params`` into schedule overrides and run settings; SweepError on a stray name.

    Values that arrive as strings (``wandb agent`` passes ``--name=value``) are parsed as YAML
    scalars, so ``0.5`` becomes a float and ``Filters`` stays a string.
    """
    base = load_base_schedule(base_schedule)
    mapped = MappedParams()
    for name, raw in params.items():
        if name == EXTENSION_PARAM:
            continue
        value = _parse(raw)
        mapped.params[name] = value
        target = _override_target(base, name)
        if target is None:
            mapped.run_settings[name] = _run_setting(name, value)
        else:
            mapped.overrides.append(Override(*target, value))
    return mapped


def _override_target(base: Schedule, name: str) -> tuple[str | None, str] | None:
    """``(instance, key)`` a schedule parameter sets (instance None: schedule-wide), None for a
    run setting; SweepError otherwise.

    Instance names contain underscores themselves, so the longest matching name wins
    (``filter_pruner_70_x`` never goes to an instance named ``filter_pruner``).
    """
    if name in RUN_SETTINGS:
        return None
    if name in SCHEDULE_WIDE_KEYS:
        return None, name
    for instance in sorted(base.instances(), key=len, reverse=True):
        prefix = instance + "_"
        if name.startswith(prefix) and len(name) > len(prefix):
            return instance, name[len(prefix):]
    raise SweepError(
        f"sweep parameter {name} maps to nothing in {base.source}: name it <instance>_<key> "
        f"with an instance of {', '.join(sorted(base.instances())) or '(none)'}, or one of "
        f"{', '.join((*RUN_SETTINGS, *SCHEDULE_WIDE_KEYS))}")


def check_mapping(parameters: Mapping[str, ParamSpec], base_schedule: Path | str | Mapping[str, Any] | Schedule,
                  shortcut: str = "A") -> Schedule:
    """Load-time check of a sweep against its base schedule; returns the base (holes and all).

    Every parameter must map somewhere, its extreme values (``space.extreme_values``: also those
    a normal or log-normal reaches) must give a valid schedule or run setting (so a misspelt key,
    an impossible sparsity or a normal lr that goes negative fails now, not in trial 17), and
    every key the base leaves empty must be set by the sweep. When the sweep searches ``model``,
    the base schedule is also validated against each model named (with ``shortcut``).
    """
    from pipeline.pruning import with_overrides

    base = load_base_schedule(base_schedule)
    checks: dict[tuple[str | None, str], list[Any]] = {}  # override target -> values to try
    specs: dict[tuple[str | None, str], ParamSpec] = {}  # override target -> its parameter
    for name, spec in parameters.items():
        if name == EXTENSION_PARAM:
            continue
        target = _override_target(base, name)
        if target is None:
            for value in extreme_values(spec):
                try:
                    _run_setting(name, value)
                except SweepError as exc:
                    raise _unbounded(spec, exc) from None
        else:
            checks[target] = extreme_values(spec)
            specs[target] = spec
    for instance, key in base.unset_keys():
        if (instance, key) not in checks:
            raise SweepError(
                f"{base.source}: {instance}.{key} has no value and the sweep does not set it: add a "
                f"sweep parameter {instance}_{key} (or give the key a value in the schedule)")
    # Every key at its first value, then each value of each key in turn.
    first = {target: values[0] for target, values in checks.items() if values}
    for target, values in checks.items():
        for value in values:
            edits = {**first, target: value}
            try:
                with_overrides(base, [Override(*t, v) for t, v in edits.items()])
            except ScheduleError as exc:
                name = "_".join(part for part in target if part)
                raise _unbounded(specs[target], SweepError(
                    f"sweep parameter {name}={value!r} does not fit {base.source} ({exc}): "
                    "change the parameter's range or name")) from None
    if "model" in parameters:
        at_first = with_overrides(base, [Override(*t, v) for t, v in first.items()])
        _check_models(extreme_values(parameters["model"]), at_first, base.source, shortcut)
    return base


def _check_models(models: list[Any], schedule: Schedule, where: str, shortcut: str) -> None:
    """The base schedule validated against every model the sweep may pick."""
    from pipeline.models import create_model
    from pipeline.pruning import validate_schedule

    for name in models:
        try:
            validate_schedule(schedule, create_model(str(name), shortcut=shortcut))
        except ScheduleError as exc:
            raise SweepError(f"sweep parameter model={name!r} does not fit {where} ({exc}): add "
                             "`cross_depth: true` to a schedule written for a deeper model, or drop "
                             "the value") from None


def _unbounded(spec: ParamSpec, error: SweepError) -> SweepError:
    """``error``, saying so when the value came from an unbounded distribution's tail."""
    if spec.distribution not in UNBOUNDED:
        return error
    return SweepError(f"{error} (parameters.{spec.name} is {spec.distribution}, which reaches "
                      "that value: use a bounded distribution such as uniform or "
                      "log_uniform_values)")


def _run_setting(name: str, value: Any) -> Any:
    kind = RUN_SETTINGS[name]
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        converted = None
    if converted is None or (kind is int and converted != value) or \
            (name == "precision" and converted not in PRECISIONS) or \
            (name == "lr_anneal" and converted not in _lr_anneals()) or \
            (name == "model" and converted not in _model_names()) or \
            (name in ("epochs", "lr") and converted < 0) or \
            (name == "kd_weight" and not 0 <= converted <= 1) or (name == "kd_temperature" and converted <= 0):
        fix = {"model": f"one of {', '.join(_model_names())}", "epochs": "a whole number >= 0",
               "lr": "a positive number such as 0.01", "lr_anneal": f"one of {', '.join(_lr_anneals())}",
               "precision": f"one of {', '.join(PRECISIONS)}", "kd_weight": "a number in [0, 1] such as 0.7",
               "kd_temperature": "a positive number such as 4"}[name]
        raise SweepError(f"sweep parameter {name}={value!r} is not valid: use {fix}")
    return converted


def _model_names() -> tuple[str, ...]:
    # Imported here: pipeline.models imports torch, which the mapping does not need otherwise.
    from pipeline.models import MODEL_NAMES

    return MODEL_NAMES


def _lr_anneals() -> tuple[str, ...]:
    from pipeline.training import LR_ANNEALS  # torch, as above

    return LR_ANNEALS


def _parse(raw: Any) -> Any:
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return safe_load(raw)
    except yaml.YAMLError:
        return raw
