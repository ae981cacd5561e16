"""The schedule as data: instances, policies, the schedule, and structured overrides.

Built by ``pipeline.schedule.reader`` from YAML, or directly in code (``sensitivity`` builds its
one-pruner schedule so); written back as Distiller YAML by ``Schedule.to_yaml``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

#: Sections of instances, and the policy key that names an instance of each.
SECTIONS = {"pruners": "pruner", "lr_schedulers": "lr_scheduler", "extensions": "extension"}
#: Distiller sections edgeprune does not run.
UNSUPPORTED_SECTIONS = ("regularizers", "quantizers")
TOP_LEVEL_KEYS = ("version", *SECTIONS, "policies", "round_to", "cross_depth")
EPOCH_KEYS = ("epochs", "starting_epoch", "ending_epoch", "frequency")
TEXT_ORIGIN = "<schedule text>"


@dataclass(frozen=True)
class Override:
    """One edit of a schedule: ``instance``'s ``key`` (an argument, ``class`` or a policy field
    such as ``epochs``) set to ``value``; ``instance`` None sets a schedule-wide key (``round_to``,
    ``cross_depth``).

    ``str()`` gives the CLI's spelling ``<instance>.<key>=<value>``; the one parser back from
    text is ``pipeline.schedule.parse_override``.
    """

    instance: str | None
    key: str
    value: Any

    @property
    def path(self) -> str:
        """``<instance>.<key>``, or ``<key>`` for a schedule-wide key."""
        return self.key if self.instance is None else f"{self.instance}.{self.key}"

    def __str__(self) -> str:
        text = yaml.safe_dump(self.value, default_flow_style=True).strip().removesuffix("...").strip()
        return f"{self.path}={text}"


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
    """A compression schedule (``source`` is the file it came from, for messages).

    Read ones are checked field by field (``pipeline.schedule.reader``); against a model by
    ``pipeline.pruning.validate_schedule``.
    """

    version: int
    pruners: dict[str, PrunerSpec]
    lr_schedulers: dict[str, LRSchedulerSpec]
    extensions: dict[str, ExtensionSpec]
    policies: list[Policy]
    round_to: int | None = None
    source: str = field(default=TEXT_ORIGIN, compare=False)
    #: Names of blocks deeper than the model are dropped and reported instead of refused.
    cross_depth: bool = False

    def written_for(self) -> str | None:
        """The network the schedule names (Distiller's ``arch`` argument of an extension, e.g.
        ``net_thinner``), or None."""
        return next((str(spec.args["arch"]) for spec in self.extensions.values() if spec.args.get("arch")), None)

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

    def unset_keys(self) -> list[tuple[str, str]]:
        """``(instance, key)`` of every argument left empty (a base schedule's hole a sweep fills)."""
        return [(name, key) for name, (_, spec) in self.instances().items()
                for key, value in spec.args.items() if value is None]


class _ScheduleDumper(yaml.SafeDumper):
    """Writes lists of numbers inline (``epochs: [0]``) and everything else as blocks."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    inline = all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=inline)


_ScheduleDumper.add_representer(list, _represent_list)


