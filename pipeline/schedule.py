"""Distiller compression schedules: read, validate, rewrite with overrides, write back.

A schedule is Distiller's YAML (``version``, ``pruners``, ``lr_schedulers``, ``extensions``,
``policies``) plus two edgeprune keys: a top-level ``round_to`` that is the default of every
pruner's ``round_to`` argument, and ``cross_depth: true``, which lets a schedule written for a deep
ResNet prune a shallower one of its family (``pipeline.pruning.depths``). Every field is checked when the schedule is read (classes and
their arguments, against ``pipeline.pruning.registry``) and against a model with
``Schedule.validate(model)``, before any work. Each problem is one ``ScheduleError`` line that
names the file, the key path and the fix.

Policies fire at ``epochs: [..]`` or at ``range(starting_epoch, ending_epoch, frequency)``
(Distiller's rule: the ending epoch is excluded).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import yaml

from .errors import ScheduleError
from .yaml_input import load_yaml, read_yaml_text, safe_load

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .pruning.registry import Registry

log = logging.getLogger(__name__)

#: Sections of instances, and the policy key that names an instance of each.
SECTIONS = {"pruners": "pruner", "lr_schedulers": "lr_scheduler", "extensions": "extension"}
#: Distiller sections edgeprune does not run.
UNSUPPORTED_SECTIONS = ("regularizers", "quantizers")
TOP_LEVEL_KEYS = ("version", *SECTIONS, "policies", "round_to", "cross_depth")
#: Schedule-wide keys a bare ``--set <key>=<value>`` rewrites.
GLOBAL_KEYS = ("round_to", "cross_depth")
EPOCH_KEYS = ("epochs", "starting_epoch", "ending_epoch", "frequency")
TEXT_ORIGIN = "<schedule text>"


@dataclass(frozen=True)
class InstanceSpec:
    """One named entry of a section: its Distiller class and the arguments written for it."""

    name: str
    class_name: str
    args: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.class_name, **copy.deepcopy(self.args)}


class PrunerSpec(InstanceSpec):
    """An entry of ``pruners:``."""


class LRSchedulerSpec(InstanceSpec):
    """An entry of ``lr_schedulers:``."""


class ExtensionSpec(InstanceSpec):
    """An entry of ``extensions:``."""


_SPEC_TYPES = {"pruners": PrunerSpec, "lr_schedulers": LRSchedulerSpec, "extensions": ExtensionSpec}


@dataclass(frozen=True)
class Policy:
    """When one instance acts: listed ``epochs``, or ``starting_epoch``..``ending_epoch`` every ``frequency``."""

    kind: str                                   # pruner | lr_scheduler | extension
    instance: str
    listed_epochs: tuple[int, ...] | None = None
    starting_epoch: int | None = None
    ending_epoch: int | None = None
    frequency: int = 1
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> tuple[int, ...]:
        """Every epoch the policy fires at, ascending."""
        if self.listed_epochs is not None:
            return tuple(sorted(self.listed_epochs))
        return tuple(range(self.starting_epoch or 0, self.ending_epoch or 0, self.frequency))

    def fires_at(self, epoch: int) -> bool:
        """Whether the policy acts at ``epoch``."""
        if self.listed_epochs is not None:
            return epoch in self.listed_epochs
        start, end = self.starting_epoch or 0, self.ending_epoch or 0
        return start <= epoch < end and (epoch - start) % self.frequency == 0

    def epochs_in(self, epochs: Iterable[int]) -> list[int]:
        """The epochs of ``epochs`` (e.g. ``range(n)``) at which the policy fires."""
        return [e for e in epochs if self.fires_at(e)]

    def to_dict(self) -> dict[str, Any]:
        named: dict[str, Any] = {"instance_name": self.instance}
        if self.args:
            named["args"] = copy.deepcopy(self.args)
        out: dict[str, Any] = {self.kind: named}
        if self.listed_epochs is not None:
            out["epochs"] = list(self.listed_epochs)
        else:
            out.update(starting_epoch=self.starting_epoch, ending_epoch=self.ending_epoch, frequency=self.frequency)
        return out


@dataclass
class Schedule:
    """A validated compression schedule (``source`` is the file it came from, for messages)."""

    version: int
    pruners: dict[str, PrunerSpec]
    lr_schedulers: dict[str, LRSchedulerSpec]
    extensions: dict[str, ExtensionSpec]
    policies: list[Policy]
    round_to: int | None = None
    source: str = field(default=TEXT_ORIGIN, compare=False)
    #: Names of blocks deeper than the model are dropped and reported instead of refused.
    cross_depth: bool = False

    def defaults(self) -> dict[str, Any]:
        """Schedule-wide argument defaults (``round_to``) for classes that take them."""
        return {"round_to": self.round_to} if self.round_to is not None else {}

    def instances(self) -> dict[str, tuple[str, InstanceSpec]]:
        """Every instance by name, with its section."""
        return {name: (section, spec) for section in SECTIONS for name, spec in getattr(self, section).items()}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.round_to is not None:
            out["round_to"] = self.round_to
        if self.cross_depth:
            out["cross_depth"] = True
        for section in SECTIONS:
            specs = getattr(self, section)
            if specs:
                out[section] = {name: spec.to_dict() for name, spec in specs.items()}
        out["policies"] = [p.to_dict() for p in self.policies]
        return out

    def to_yaml(self) -> str:
        """The schedule as Distiller YAML (lists of numbers inline, names one per line)."""
        header = f"# Compression schedule written by edgeprune from {self.source}\n"
        return header + yaml.dump(self.to_dict(), Dumper=_ScheduleDumper, sort_keys=False, width=100)

    def with_overrides(self, overrides: Sequence[str] | Mapping[str, Any]) -> "Schedule":
        """A copy rewritten by ``<instance>.<key>=<value>`` overrides (values read as YAML scalars).

        ``<key>`` is an argument of the instance's class, ``class``, or a policy field (``epochs``,
        ``starting_epoch``, ``ending_epoch``, ``frequency``) of the policies naming it; a bare
        ``round_to=<n>`` or ``cross_depth=true`` sets the schedule-wide key.
        """
        pairs = _override_pairs(overrides)
        if not pairs:
            return self
        data = self.to_dict()
        for key, value in pairs:
            _apply_override(self, data, key, value)
        return parse_schedule(data, self.source + " (with --set overrides)")

    def validate(self, model: "nn.Module", example_input: "torch.Tensor | None" = None) -> None:
        """Check the schedule against ``model`` (weights exist, structures are prunable, no overlaps);
        with ``cross_depth``, names of blocks deeper than ``model`` are left out first."""
        from .pruning.base import PruningContext
        from .pruning.compression import check_schedule
        from .pruning.depths import fit_depth

        fitted, _ = fit_depth(self, model)
        check_schedule(fitted, PruningContext(model, example_input, origin=self.source))


class _ScheduleDumper(yaml.SafeDumper):
    """Writes lists of numbers inline (``epochs: [0]``) and everything else as blocks."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    inline = all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=inline)


_ScheduleDumper.add_representer(list, _represent_list)


def load_schedule(source: Path | str, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Schedule:
    """Read a schedule from a YAML file (a ``Path``, or a string naming a file) or from YAML text.

    ``overrides`` rewrite it (see ``Schedule.with_overrides``). Any problem is a ScheduleError.
    """
    text, origin = _read_source(source)
    data = load_yaml(text, origin, ScheduleError)
    return parse_schedule(data, origin).with_overrides(overrides)


def _read_source(source: Path | str) -> tuple[str, str]:
    looks_like_text = isinstance(source, str) and ("\n" in source or ":" in source.split("/")[-1])
    if looks_like_text:
        return str(source), TEXT_ORIGIN
    path = Path(source)
    if not path.is_file():
        raise ScheduleError(f"schedule file {path} not found: pass an existing YAML file (see schedules/)")
    return read_yaml_text(path, ScheduleError), str(path)


def _registries() -> dict[str, "Registry"]:
    # Imported here: the pruning package imports this module's types, so a top-level import would
    # be circular; importing it also registers every built-in class.
    from .pruning import registry

    return {"pruners": registry.PRUNERS, "lr_schedulers": registry.LR_SCHEDULERS,
            "extensions": registry.EXTENSIONS}


def parse_schedule(data: Any, origin: str = TEXT_ORIGIN) -> Schedule:
    """A Schedule from the parsed YAML mapping, every field checked (no model needed)."""
    if not isinstance(data, dict):
        raise ScheduleError(f"{origin}: a schedule is a YAML mapping with version, pruners and policies; "
                            f"got {type(data).__name__}: see schedules/resnet56_filter_rank.yaml")
    for key in data:
        if key in UNSUPPORTED_SECTIONS:
            raise ScheduleError(f"{origin}: {key}: Distiller {key} are not supported by edgeprune: remove the section")
        if key not in TOP_LEVEL_KEYS:
            raise ScheduleError(f"{origin}: {key}: unknown top-level key: use {', '.join(TOP_LEVEL_KEYS)}")
    # Distiller never reads `version` (many of its examples leave it out): missing means 1.
    if data.get("version", 1) != 1:
        raise ScheduleError(f"{origin}: version={data.get('version')!r}: only Distiller schedule version 1 "
                            "exists: write `version: 1` or leave it out")
    round_to = data.get("round_to")
    if round_to is not None:
        from .pruning.registry import ArgSpec

        round_to = ArgSpec("round_to", "int", low=1, example=8).check(round_to, f"{origin}: round_to")
    cross_depth = data.get("cross_depth", False)
    if not isinstance(cross_depth, bool):
        raise ScheduleError(f"{origin}: cross_depth={cross_depth!r} is not a boolean: write "
                            "`cross_depth: true` (or leave it out)")
    sections = {section: _parse_section(data, section, origin) for section in SECTIONS}
    names: dict[str, str] = {}
    for section, specs in sections.items():
        for name in specs:
            if name in names:
                raise ScheduleError(f"{origin}: {section}.{name}: the name is also used in {names[name]}: "
                                    "give every instance its own name")
            names[name] = section
    policies = _parse_policies(data.get("policies"), sections, origin)
    for name in sections["pruners"]:
        if not any(p.kind == "pruner" and p.instance == name for p in policies):
            log.warning("%s: pruners.%s is named by no policy and will not run", origin, name)
    return Schedule(1, sections["pruners"], sections["lr_schedulers"], sections["extensions"],
                    policies, round_to, origin, cross_depth)


def _parse_section(data: dict, section: str, origin: str) -> dict[str, InstanceSpec]:
    entries = data.get(section) or {}
    if not isinstance(entries, dict):
        raise ScheduleError(f"{origin}: {section} must map instance names to their settings: "
                            f"write `{section}:` then `  my_name:` with `class: ...` under it")
    registry = _registries()[section]
    specs: dict[str, InstanceSpec] = {}
    for name, body in entries.items():
        where = f"{origin}: {section}.{name}"
        if not isinstance(body, dict):
            raise ScheduleError(f"{where}: must be a mapping with a `class:` key and its arguments")
        if "class" not in body:
            raise ScheduleError(f"{where}: has no `class:`: add one of {', '.join(registry.names())}")
        component = registry.get(body["class"], where)
        if section == "pruners" and "reg_regims" in body:
            raise ScheduleError(f"{where}.reg_regims: the old per-weight `reg_regims` form is not supported: "
                                "write group_type, desired_sparsity and weights instead")
        args = {k: v for k, v in body.items() if k != "class"}
        checked = component.check_args(args, where)
        specs[str(name)] = _SPEC_TYPES[section](str(name), body["class"], {k: checked[k] for k in args})
    return specs


def _parse_policies(raw: Any, sections: dict[str, dict[str, InstanceSpec]], origin: str) -> list[Policy]:
    if raw is None:
        raise ScheduleError(f"{origin}: policies: missing: add a list such as "
                            "`policies: [{pruner: {instance_name: p1}, epochs: [0]}]`")
    if not isinstance(raw, list):
        raise ScheduleError(f"{origin}: policies must be a YAML list (`- pruner: ...` items)")
    return [_parse_policy(item, sections, f"{origin}: policies[{index}]") for index, item in enumerate(raw)]


def _parse_policy(item: Any, sections: dict[str, dict[str, InstanceSpec]], where: str) -> Policy:
    kinds = {kind: section for section, kind in SECTIONS.items()}
    if not isinstance(item, dict):
        raise ScheduleError(f"{where}: must be a mapping such as `{{pruner: {{instance_name: p1}}, epochs: [0]}}`")
    named = [k for k in item if k in kinds]
    for key in item:
        if key in ("regularizer", "quantizer"):
            raise ScheduleError(f"{where}.{key}: {key} policies are not supported by edgeprune: remove this policy")
        if key not in kinds and key not in EPOCH_KEYS:
            raise ScheduleError(f"{where}.{key}: unknown policy key: use one of pruner, lr_scheduler, "
                                f"extension, {', '.join(EPOCH_KEYS)}")
    if len(named) != 1:
        raise ScheduleError(f"{where}: a policy names exactly one of pruner, lr_scheduler, extension "
                            f"(found {len(named)}): split it into one policy per instance")
    kind = named[0]
    ref = item[kind]
    if not isinstance(ref, dict) or "instance_name" not in ref:
        raise ScheduleError(f"{where}.{kind}: must be a mapping with `instance_name: <name>`")
    for key in ref:
        if key not in ("instance_name", "args"):
            raise ScheduleError(f"{where}.{kind}.{key}: unknown key: use instance_name and args")
    instance = ref["instance_name"]
    section = kinds[kind]
    if instance not in sections[section]:
        defined = ", ".join(sections[section]) or "none"
        raise ScheduleError(f"{where}.{kind}.instance_name={instance!r} is not defined under {section} "
                            f"(defined: {defined}): define it or fix the name")
    args = _parse_policy_args(ref.get("args"), kind, f"{where}.{kind}.args")
    return _policy_epochs(item, kind, str(instance), args, where)


def _parse_policy_args(args: Any, kind: str, where: str) -> dict[str, Any]:
    from .pruning.registry import POLICY_ARGS

    if args is None:
        return {}
    if kind != "pruner" or not isinstance(args, dict):
        raise ScheduleError(f"{where}: only pruner policies take args, as a mapping: remove it")
    for key in args:
        if key not in POLICY_ARGS:
            raise ScheduleError(f"{where}.{key}: unknown policy argument: use one of {', '.join(sorted(POLICY_ARGS))}")
    return {key: POLICY_ARGS[key].check(value, f"{where}.{key}") for key, value in args.items()}


def _policy_epochs(item: dict, kind: str, instance: str, args: dict[str, Any], where: str) -> Policy:
    from .pruning.registry import ArgSpec

    def number(key: str, low: int) -> int:
        return ArgSpec(key, "int", low=low, example=max(low, 0)).check(item[key], f"{where}.{key}")

    has_range = any(k in item for k in ("starting_epoch", "ending_epoch", "frequency"))
    if "epochs" in item:
        if has_range:
            raise ScheduleError(f"{where}: give either epochs or starting_epoch/ending_epoch/frequency, not both")
        epochs = ArgSpec("epochs", "list[int]", example=[0]).check(item["epochs"], f"{where}.epochs")
        if min(epochs) < 0:
            raise ScheduleError(f"{where}.epochs={epochs}: epochs count from 0: remove negative epochs")
        return Policy(kind, instance, tuple(epochs), args=args)
    if not has_range:
        raise ScheduleError(f"{where}: the policy has no epochs: add `epochs: [0]` or "
                            "starting_epoch/ending_epoch/frequency")
    for key in ("starting_epoch", "ending_epoch"):
        if key not in item:
            raise ScheduleError(f"{where}: {key} is missing: give both starting_epoch and ending_epoch")
    start, end = number("starting_epoch", 0), number("ending_epoch", 0)
    frequency = number("frequency", 1) if "frequency" in item else 1
    if end <= start:
        raise ScheduleError(f"{where}.ending_epoch={end} is not after starting_epoch={start}: the ending "
                            "epoch is excluded, so use a larger ending_epoch")
    return Policy(kind, instance, None, start, end, frequency, args)


def _override_pairs(overrides: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return [(str(k), _yaml_scalar(v, str(k)) if isinstance(v, str) else v) for k, v in overrides.items()]
    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScheduleError(f"--set {item!r}: write <instance>.<key>=<value>, e.g. "
                                "filter_pruner_70.desired_sparsity=0.5")
        pairs.append((key.strip(), _yaml_scalar(value.strip(), item)))
    return pairs


def _yaml_scalar(text: str, where: str) -> Any:
    try:
        return safe_load(text) if text else ""
    except yaml.YAMLError:
        raise ScheduleError(f"--set {where}: the value {text!r} is not valid YAML: quote it") from None


def _apply_override(schedule: Schedule, data: dict[str, Any], key: str, value: Any) -> None:
    where = f"--set {key}={value!r}"
    if key in GLOBAL_KEYS:
        data[key] = value
        return
    instance, dot, arg = key.partition(".")
    instances = schedule.instances()
    if not dot or instance not in instances:
        raise ScheduleError(f"{where}: no instance {instance!r} in {schedule.source}: use one of "
                            f"{', '.join(instances) or 'none'} (or round_to=<n>, cross_depth=true)")
    section, spec = instances[instance]
    component = _registries()[section].get(spec.class_name, f"{schedule.source}: {section}.{instance}")
    if arg in EPOCH_KEYS:
        _override_policy_epochs(data, SECTIONS[section], instance, arg, value, where)
    elif arg == "class" or component.arg(arg) is not None:
        data[section][instance][arg] = value
    else:
        valid = ", ".join(["class", *sorted(a.name for a in component.args), *EPOCH_KEYS])
        raise ScheduleError(f"{where}: {spec.class_name} has no key {arg!r}: use one of {valid}")


def _override_policy_epochs(data: dict[str, Any], kind: str, instance: str, key: str, value: Any,
                            where: str) -> None:
    policies = [p for p in data["policies"] if p.get(kind, {}).get("instance_name") == instance]
    if not policies:
        raise ScheduleError(f"{where}: no policy names {instance}: add one to the schedule first")
    for policy in policies:
        if key == "epochs":
            for range_key in ("starting_epoch", "ending_epoch", "frequency"):
                policy.pop(range_key, None)
        elif "epochs" in policy:
            raise ScheduleError(f"{where}: the policy of {instance} lists epochs: override {instance}.epochs instead")
        policy[key] = value
