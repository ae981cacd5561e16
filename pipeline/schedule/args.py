"""What a schedule class accepts: ``ArgSpec`` per argument, ``ComponentSpec`` per class, and the
``Registry``/``Catalog`` a schedule is checked against.

These are data, not behaviour: ``pipeline.pruning.registry`` fills the registries from the
decorators beside each class and hands the schedule reader a ``Catalog`` of them, so this
module (like the whole ``pipeline.schedule`` package) imports nothing from ``pipeline.pruning``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

from ..errors import ScheduleError


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a schedule class: its type, whether it is required, its allowed values.

    ``kind`` is one of ``float int bool str list[str] list[int] mapping``. ``low``/``high`` bound
    numbers (``high_open`` makes the upper bound exclusive, as for sparsity in [0, 1)).
    ``choices`` is either a tuple or a callable returning one (late-bound, so plug-ins that
    register criteria after this spec is built still count).
    """

    name: str
    kind: str
    required: bool = False
    default: Any = None
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    help: str = ""
    example: Any = None

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values, resolving a late-bound list."""
        return self.choices() if callable(self.choices) else self.choices

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` (ints widened to float where a float is expected) or raise ScheduleError.

        ``where`` is ``"<origin>: <key path>"``; every message names it and the fix.
        """
        value = _check_kind(self, value, where)
        if self.kind in ("float", "int"):
            too_low = self.low is not None and value < self.low
            too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if too_low or too_high or (self.kind == "float" and not math.isfinite(value)):
                bracket = ")" if self.high_open else "]"
                span = f"[{self.low if self.low is not None else '-inf'}, " \
                       f"{self.high if self.high is not None else 'inf'}{bracket}"
                raise ScheduleError(f"{where}={value!r} is outside {span}: use a value such as "
                                    f"{self.example if self.example is not None else self.low}")
        allowed = self.allowed()
        if allowed is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item not in allowed:
                    raise ScheduleError(f"{where}={item!r} is not supported: use one of {', '.join(allowed)}")
        return value


def _check_kind(spec: ArgSpec, value: Any, where: str) -> Any:
    def wrong(expected: str) -> ScheduleError:
        example = f" such as {spec.example!r}" if spec.example is not None else ""
        return ScheduleError(f"{where}={value!r} has the wrong type ({type(value).__name__}): "
                             f"use {expected}{example}")

    is_int = isinstance(value, int) and not isinstance(value, bool)
    if spec.kind == "float":
        if not (is_int or isinstance(value, float)):
            raise wrong("a number")
        return float(value)
    if spec.kind == "int":
        if not is_int:
            raise wrong("a whole number")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if spec.kind == "str":
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if spec.kind in ("list[str]", "list[int]"):
        item_type = str if spec.kind == "list[str]" else int
        if not isinstance(value, list) or not value or \
                not all(isinstance(v, item_type) and not isinstance(v, bool) for v in value):
            raise wrong(f"a non-empty YAML list of {'names' if item_type is str else 'whole numbers'}")
        return list(value)
    if spec.kind == "mapping":
        if not isinstance(value, dict):
            raise wrong("a YAML mapping")
        return dict(value)
    raise ValueError(f"unknown ArgSpec kind {spec.kind!r}")


@dataclass(frozen=True)
class ComponentSpec:
    """A class a schedule may name: its Distiller class name, arguments, and what builds it."""

    class_name: str
    kind: str                      # "pruner" | "lr_scheduler" | "extension"
    args: tuple[ArgSpec, ...]
    factory: Any                   # the class (or callable) that builds an instance
    summary: str = ""

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)

    def check_args(self, args: dict[str, Any], where: str, unset: Collection[str] = ()) -> dict[str, Any]:
        """Validated arguments with defaults filled in; ``where`` is ``"<origin>: <section>.<instance>"``.

        Keys in ``unset`` (left empty in a base schedule, for a sweep to fill) stay None, unchecked.
        """
        known = {a.name for a in self.args}
        for key in args:
            if key not in known:
                raise ScheduleError(f"{where}.{key}: {self.class_name} has no argument {key!r}: "
                                    f"use one of {', '.join(sorted(known))}")
        checked: dict[str, Any] = {}
        for spec in self.args:
            if spec.name in unset:
                checked[spec.name] = None
            elif spec.name in args:
                checked[spec.name] = spec.check(args[spec.name], f"{where}.{spec.name}")
            elif spec.required:
                example = f" (e.g. {spec.name}: {spec.example})" if spec.example is not None else ""
                raise ScheduleError(f"{where}: {self.class_name} needs the argument {spec.name!r}{example}: "
                                    f"add it ({spec.help})")
            elif spec.default is not None:
                checked[spec.name] = spec.default
        return checked


@dataclass
class Registry:
    """Classes of one kind by Distiller class name."""

    kind: str
    entries: dict[str, ComponentSpec] = field(default_factory=dict)

    def register(self, spec: ComponentSpec) -> None:
        if spec.class_name in self.entries:
            raise ValueError(f"{self.kind} class {spec.class_name} registered twice")
        self.entries[spec.class_name] = spec

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.entries))

    def get(self, class_name: Any, where: str) -> ComponentSpec:
        """The spec for ``class_name``; an unknown name is a ScheduleError listing the supported ones."""
        if class_name not in self.entries:
            distiller = self.kind == "pruner" and class_name in DISTILLER_PRUNERS
            note = f" ({class_name} is a Distiller class edgeprune does not implement)" if distiller else ""
            raise ScheduleError(f"{where}.class={class_name!r} is not a supported {self.kind} class: "
                                f"use one of {', '.join(self.names())}{note}")
        return self.entries[class_name]


#: Every pruner class a Distiller schedule can name (those ``distiller/pruning/__init__.py``
#: exports); the ones not registered here are listed in docs/schedules.md as not supported.
DISTILLER_PRUNERS = (
    "ActivationAPoZRankedFilterPruner", "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner", "ActivationMeanRankedFilterPruner_AGP",
    "AutomatedGradualPruner", "BaiduRNNPruner", "BernoulliFilterPruner", "BernoulliFilterPruner_AGP",
    "FMReconstructionChannelPruner", "GradientRankedFilterPruner", "GradientRankedFilterPruner_AGP",
    "L1RankedStructureParameterPruner", "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner", "L2RankedStructureParameterPruner_AGP",
    "MagnitudeParameterPruner", "RandomLevelStructureParameterPruner", "RandomRankedFilterPruner",
    "RandomRankedFilterPruner_AGP", "SensitivityPruner", "SparsityLevelParameterPruner", "SplicingPruner",
    "StructureParameterPruner",
)


@dataclass(frozen=True)
class Catalog:
    """The classes a schedule may name, by section, and what a policy's ``args:`` may hold."""

    pruners: Registry
    lr_schedulers: Registry
    extensions: Registry
    policy_args: dict[str, ArgSpec]

    def section(self, section: str) -> Registry:
        """The registry of ``section`` (``pruners``, ``lr_schedulers`` or ``extensions``)."""
        return {"pruners": self.pruners, "lr_schedulers": self.lr_schedulers, "extensions": self.extensions}[section]
