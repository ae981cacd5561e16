"""Distiller compression schedules read from YAML (a file or text), every field checked.

A schedule is Distiller's YAML (``version``, ``pruners``, ``lr_schedulers``, ``extensions``,
``policies``) plus two edgeprune keys: a top-level ``round_to`` that is the default of every
pruner's ``round_to`` argument, and ``cross_depth: true``, which lets a schedule written for a deep
ResNet prune a shallower one of its family (``pipeline.pruning.depths``). Classes and their
arguments are checked against a ``Catalog`` (``pipeline.pruning.load_schedule`` passes the pruning
registries). Each problem is one ``ScheduleError`` line that names the file, the key path and the fix.

Policies fire at ``epochs: [..]`` or at ``range(starting_epoch, ending_epoch, frequency)``
(Distiller's rule: the ending epoch is excluded).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, cast

from ..errors import ScheduleError
from ..files import require_input_file
from ..yaml_input import load_yaml, read_yaml_text
from .args import ArgSpec, Catalog, Registry
from .model import (
    EPOCH_KEYS,
    SECTIONS,
    TEXT_ORIGIN,
    TOP_LEVEL_KEYS,
    UNSUPPORTED_SECTIONS,
    ExtensionSpec,
    InstanceSpec,
    LRSchedulerSpec,
    Override,
    Policy,
    PrunerSpec,
    Schedule,
)
from .overrides import SCHEDULE_WIDE_KEYS, to_overrides

log = logging.getLogger(__name__)

_SPEC_TYPES = {"pruners": PrunerSpec, "lr_schedulers": LRSchedulerSpec, "extensions": ExtensionSpec}


def read_schedule(source: Path | str, catalog: Catalog,
                  overrides: Iterable[Override | str] | Mapping[str, Any] = (), partial: bool = False) -> Schedule:
    """Read a schedule from a YAML file (a ``Path``, or a string naming a file) or from YAML text.

    ``overrides`` then rewrite it (``apply_overrides``; strings are parsed by ``parse_override``)
    and may fill its null arguments; ``partial`` as for ``parse_schedule``. Any problem is a
    ScheduleError.
    """
    text, origin = _read_source(source)
    data = load_yaml(text, origin, ScheduleError)
    edits = to_overrides(overrides)
    # Overrides may fill the holes (null arguments), so those are checked once they are applied.
    schedule = parse_schedule(data, catalog, origin, partial or bool(edits))
    return apply_overrides(schedule, edits, catalog, partial) if edits else schedule


def apply_overrides(schedule: Schedule, overrides: Iterable[Override], catalog: Catalog, partial: bool = False
                    ) -> Schedule:
    """A copy of ``schedule`` with ``overrides`` applied, checked again as a whole against ``catalog``.

    An override's key is an argument of the instance's class, ``class``, or a policy field
    (``epochs``, ``starting_epoch``, ``ending_epoch``, ``frequency``) of the policies naming it;
    ``Override(None, "round_to", n)`` sets the schedule-wide default. ``partial`` as for
    ``parse_schedule`` (a base schedule whose holes only some overrides fill).
    """
    edits = list(overrides)
    if not edits:
        return schedule
    data = schedule.to_dict()
    for override in edits:
        _apply_override(schedule, data, override, catalog)
    return parse_schedule(data, catalog, schedule.source + " (with --set overrides)", partial)


def _apply_override(schedule: Schedule, data: dict[str, Any], override: Override, catalog: Catalog) -> None:
    where = f"--set {override.path}={override.value!r}"
    if override.instance is None and override.key in SCHEDULE_WIDE_KEYS:
        data[override.key] = override.value
        return
    instance, arg, value = override.instance, override.key, override.value
    instances = schedule.instances()
    if instance is None or instance not in instances:
        raise ScheduleError(f"{where}: no instance {instance or arg!r} in {schedule.source}: use one of "
                            f"{', '.join(instances) or 'none'} (or round_to=<n>, cross_depth=true)")
    section, spec = instances[instance]
    component = catalog.section(section).get(spec.class_name, f"{schedule.source}: {section}.{instance}")
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


def _read_source(source: Path | str) -> tuple[str, str]:
    looks_like_text = isinstance(source, str) and ("\n" in source or ":" in source.split("/")[-1])
    if looks_like_text:
        return str(source), TEXT_ORIGIN
    path = require_input_file(Path(source), "schedule file", "pass an existing YAML file (see schedules/)",
                              ScheduleError)
    return read_yaml_text(path, ScheduleError), str(path)


def parse_schedule(data: Any, catalog: Catalog, origin: str = TEXT_ORIGIN, partial: bool = False) -> Schedule:
    """A Schedule from the parsed YAML mapping, every field checked against ``catalog`` (no model).

    ``partial``: arguments left empty (null) are kept as None, unchecked (a sweep's base schedule,
    whose holes ``Schedule.unset_keys`` lists); otherwise they are errors.
    """
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
        round_to = ArgSpec("round_to", "int", low=1, example=8).check(round_to, f"{origin}: round_to")
    cross_depth = data.get("cross_depth", False)
    if not isinstance(cross_depth, bool):
        raise ScheduleError(f"{origin}: cross_depth={cross_depth!r} is not a boolean: write "
                            "`cross_depth: true` (or leave it out)")
    sections = {section: _parse_section(data, section, origin, catalog.section(section), partial)
                for section in SECTIONS}
    names: dict[str, str] = {}
    for section, specs in sections.items():
        for name in specs:
            if name in names:
                raise ScheduleError(f"{origin}: {section}.{name}: the name is also used in {names[name]}: "
                                    "give every instance its own name")
            names[name] = section
    policies = _parse_policies(data.get("policies"), sections, origin, catalog.policy_args)
    for name in sections["pruners"]:
        if not any(p.kind == "pruner" and p.instance == name for p in policies):
            log.warning("%s: pruners.%s is named by no policy and will not run", origin, name)
    # Each section's specs are of its _SPEC_TYPES class.
    return Schedule(1, cast("dict[str, PrunerSpec]", sections["pruners"]),
                    cast("dict[str, LRSchedulerSpec]", sections["lr_schedulers"]),
                    cast("dict[str, ExtensionSpec]", sections["extensions"]), policies, round_to, origin, cross_depth)


def _parse_section(data: dict, section: str, origin: str, registry: Registry, partial: bool
                   ) -> dict[str, InstanceSpec]:
    entries = data.get(section) or {}
    if not isinstance(entries, dict):
        raise ScheduleError(f"{origin}: {section} must map instance names to their settings: "
                            f"write `{section}:` then `  my_name:` with `class: ...` under it")
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
        unset = [k for k, v in args.items() if v is None] if partial else []
        checked = component.check_args(args, where, unset)
        specs[str(name)] = _SPEC_TYPES[section](str(name), body["class"], {k: checked[k] for k in args})
    return specs


def _parse_policies(raw: Any, sections: dict[str, dict[str, InstanceSpec]], origin: str,
                    policy_args: dict[str, ArgSpec]) -> list[Policy]:
    if raw is None:
        raise ScheduleError(f"{origin}: policies: missing: add a list such as "
                            "`policies: [{pruner: {instance_name: p1}, epochs: [0]}]`")
    if not isinstance(raw, list):
        raise ScheduleError(f"{origin}: policies must be a YAML list (`- pruner: ...` items)")
    return [_parse_policy(item, sections, f"{origin}: policies[{index}]", policy_args)
            for index, item in enumerate(raw)]


def _parse_policy(item: Any, sections: dict[str, dict[str, InstanceSpec]], where: str,
                  policy_args: dict[str, ArgSpec]) -> Policy:
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
    args = _parse_policy_args(ref.get("args"), kind, f"{where}.{kind}.args", policy_args)
    return _policy_epochs(item, kind, str(instance), args, where)


def _parse_policy_args(args: Any, kind: str, where: str, policy_args: dict[str, ArgSpec]) -> dict[str, Any]:
    if args is None:
        return {}
    if kind != "pruner" or not isinstance(args, dict):
        raise ScheduleError(f"{where}: only pruner policies take args, as a mapping: remove it")
    for key in args:
        if key not in policy_args:
            raise ScheduleError(f"{where}.{key}: unknown policy argument: use one of {', '.join(sorted(policy_args))}")
    return {key: policy_args[key].check(value, f"{where}.{key}") for key, value in args.items()}


def _policy_epochs(item: dict, kind: str, instance: str, args: dict[str, Any], where: str) -> Policy:
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
