"""Sweep parameters onto the base schedule: ``<instance>_<key>`` → override ``<instance>.<key>``.

Instance names contain underscores themselves (``filter_pruner_70``), so a parameter is matched
against the base schedule's instance names, longest first. A few names are reserved for run
settings instead (``model``, ``epochs``, ``lr``, ``precision``, ``kd_weight``, ``kd_temperature``),
and ``edgeprune`` holds our extension. ``model`` searches the pretrained network itself
(``resnet20_cifar`` ... ``resnet56_cifar``): the base schedule must fit every depth named, which
``cross_depth: true`` lets one ResNet56 schedule do (``pipeline.pruning.depths``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from pipeline.errors import SweepError
from pipeline.yaml_input import load_yaml, read_yaml_text, safe_load

from .config import EXTENSION_PARAM, ParamSpec
from .space import UNBOUNDED, extreme_values

if TYPE_CHECKING:
    from pipeline.schedule import Schedule

#: Sweep parameters that set the run rather than the schedule, with their type.
RUN_SETTINGS: dict[str, type] = {"model": str, "epochs": int, "lr": float, "precision": str, "kd_weight": float,
                                  "kd_temperature": float}
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
#: Sweep parameters that set a schedule-wide key (``round_to`` rounds every pruner's kept count).
SCHEDULE_WIDE = ("round_to",)
#: Schedule sections whose entries are named instances.
INSTANCE_SECTIONS = ("pruners", "regularizers", "quantizers", "lr_schedulers", "extensions")


@dataclass
class MappedParams:
    """One trial's parameters split into schedule overrides and run settings."""

    #: ``"<instance>.<key>"`` → value, for ``RunConfig.overrides``.
    overrides: dict[str, Any] = field(default_factory=dict)
    #: ``model``, ``epochs``, ``lr``, ``precision``, ``kd_weight``, ``kd_temperature`` when the sweep sets them.
    run_settings: dict[str, Any] = field(default_factory=dict)
    #: The parameters as given (extension removed), for ``RunConfig.params`` and the trial record.
    params: dict[str, Any] = field(default_factory=dict)

    def override_strings(self) -> list[str]:
        """The overrides as ``<instance>.<key>=<value>`` strings (the CLI's spelling)."""
        return [f"{k}={_yaml_scalar(v)}" for k, v in self.overrides.items()]


class BaseSchedule:
    """The instances of a base schedule and their keys, read from its YAML."""

    def __init__(self, source: Path | str | Mapping[str, Any]):
        self.where, data = _read_schedule(source)
        self.data = data
        self.instances: dict[str, dict[str, Any]] = {}
        for section in INSTANCE_SECTIONS:
            for name, body in (data.get(section) or {}).items():
                self.instances[str(name)] = dict(body or {})
        # Longest first, so filter_pruner_70_x never matches an instance named filter_pruner.
        self._by_length = sorted(self.instances, key=len, reverse=True)

    def resolve(self, param: str) -> tuple[str, str] | None:
        """``(instance, key)`` that ``param`` names, or None."""
        for instance in self._by_length:
            prefix = instance + "_"
            if param.startswith(prefix) and len(param) > len(prefix):
                return instance, param[len(prefix):]
        return None

    def filled(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The schedule's data with ``instance.key`` entries set to ``values``."""
        data = copy.deepcopy(self.data)
        for section in INSTANCE_SECTIONS:
            for name, body in (data.get(section) or {}).items():
                for key, value in values.items():
                    instance, attr = key.split(".", 1)
                    if instance == name:
                        body[attr] = value
        return data

    def unset_keys(self) -> list[str]:
        """``instance.key`` entries the base leaves empty (null), which the sweep must set."""
        return [f"{i}.{k}" for i, body in self.instances.items() for k, v in body.items()
                if v is None]


def map_params(params: Mapping[str, Any], base_schedule: Path | str | Mapping[str, Any] | BaseSchedule
               ) -> MappedParams:
    """Split ``params`` into schedule overrides and run settings; SweepError on a stray name.

    Values that arrive as strings (``wandb agent`` passes ``--name=value``) are parsed as YAML
    scalars, so ``0.5`` becomes a float and ``Filters`` stays a string.
    """
    base = base_schedule if isinstance(base_schedule, BaseSchedule) else BaseSchedule(base_schedule)
    mapped = MappedParams()
    for name, raw in params.items():
        if name == EXTENSION_PARAM:
            continue
        value = _parse(raw)
        mapped.params[name] = value
        key = _override_key(base, name)
        if key is None:
            mapped.run_settings[name] = _run_setting(name, value)
        else:
            mapped.overrides[key] = value
    return mapped


def _override_key(base: BaseSchedule, name: str) -> str | None:
    """``instance.key`` for a schedule parameter, None for a run setting; SweepError otherwise."""
    if name in RUN_SETTINGS:
        return None
    if name in SCHEDULE_WIDE:
        return name
    target = base.resolve(name)
    if target is None:
        raise SweepError(
            f"sweep parameter {name} maps to nothing in {base.where}: name it <instance>_<key> "
            f"with an instance of {', '.join(sorted(base.instances)) or '(none)'}, or one of "
            f"{', '.join((*RUN_SETTINGS, *SCHEDULE_WIDE))}")
    return f"{target[0]}.{target[1]}"


def check_mapping(parameters: Mapping[str, ParamSpec], base_schedule: Path | str | Mapping[str, Any],
                  shortcut: str = "A") -> BaseSchedule:
    """Load-time check of a sweep against its base schedule.

    Every parameter must map somewhere, its extreme values (``space.extreme_values``: also those
    a normal or log-normal reaches) must give a valid schedule or run setting (so a misspelt key,
    an impossible sparsity or a normal lr that goes negative fails now, not in trial 17), and
    every key the base leaves empty must be set by the sweep. When the sweep searches ``model``,
    the base schedule is also validated against each model named (with ``shortcut``).
    """
    from pipeline.errors import ScheduleError
    from pipeline.schedule import load_schedule

    base = BaseSchedule(base_schedule)
    checks: dict[str, list[Any]] = {}  # override key -> values to try
    specs: dict[str, ParamSpec] = {}  # override key -> its parameter
    for name, spec in parameters.items():
        if name == EXTENSION_PARAM:
            continue
        key = _override_key(base, name)
        if key is None:
            for value in extreme_values(spec):
                try:
                    _run_setting(name, value)
                except SweepError as exc:
                    raise _unbounded(spec, exc) from None
        else:
            checks[key] = extreme_values(spec)
            specs[key] = spec
    for key in base.unset_keys():
        if key not in checks:
            instance, attr = key.split(".", 1)
            raise SweepError(
                f"{base.where}: {key} has no value and the sweep does not set it: add a sweep "
                f"parameter {instance}_{attr} (or give the key a value in the schedule)")
    # Every key at its first value, then each value of each key in turn. Empty keys of the base
    # are filled in its text first: the schedule reader rejects a null before any override.
    first = {k: v[0] for k, v in checks.items() if v}
    source = yaml.safe_dump(base.filled({k: first.get(k) for k in base.unset_keys()}))
    for key, values in checks.items():
        for value in values:
            try:
                load_schedule(source, {**first, key: value})
            except ScheduleError as exc:
                name = key.replace(".", "_")
                raise _unbounded(specs[key], SweepError(
                    f"sweep parameter {name}={value!r} does not fit {base.where} ({exc}): "
                    "change the parameter's range or name")) from None
    if "model" in parameters:
        _check_models(extreme_values(parameters["model"]), load_schedule(source, first), base.where, shortcut)
    return base


def _check_models(models: list[Any], schedule: "Schedule", where: str, shortcut: str) -> None:
    """The base schedule validated against every model the sweep may pick."""
    from pipeline.errors import ScheduleError
    from pipeline.models import create_model

    for name in models:
        try:
            schedule.validate(create_model(str(name), shortcut=shortcut))
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
            (name == "model" and converted not in _model_names()) or \
            (name in ("epochs", "lr") and converted < 0) or \
            (name == "kd_weight" and not 0 <= converted <= 1) or (name == "kd_temperature" and converted <= 0):
        fix = {"model": f"one of {', '.join(_model_names())}", "epochs": "a whole number >= 0", "lr": "a positive number such as 0.01",
               "precision": f"one of {', '.join(PRECISIONS)}", "kd_weight": "a number in [0, 1] such as 0.7",
               "kd_temperature": "a positive number such as 4"}[name]
        raise SweepError(f"sweep parameter {name}={value!r} is not valid: use {fix}")
    return converted


def _model_names() -> tuple[str, ...]:
    # Imported here: pipeline.models imports torch, which the mapping does not need otherwise.
    from pipeline.models import MODEL_NAMES

    return MODEL_NAMES


def _parse(raw: Any) -> Any:
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return safe_load(raw)
    except yaml.YAMLError:
        return raw


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _read_schedule(source: Path | str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(source, Mapping):
        return "schedule", dict(source)
    text, where = str(source), "schedule"
    if isinstance(source, Path) or "\n" not in text:
        path = Path(source)
        if not path.is_file():
            raise SweepError(f"{path}: base schedule not found: pass --schedule with a schedule "
                             "file such as schedules/resnet56_filter_rank.yaml")
        text, where = read_yaml_text(path, SweepError), str(path)
    data = load_yaml(text, where, SweepError)
    if not isinstance(data, dict):
        raise SweepError(f"{where}: not a Distiller schedule (expected a mapping with pruners, "
                         "policies): check the file")
    return where, data
