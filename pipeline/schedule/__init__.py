"""Distiller compression schedules as data: types, argument specs, reading, structured overrides.

A leaf of ``pipeline``: nothing here imports ``pipeline.pruning`` (which imports these types and
fills the registries of what its classes accept). Reading checks every field against a
``Catalog``; ``pipeline.pruning.load_schedule`` reads with the pruning package's catalog, and
``pipeline.pruning.validate_schedule`` checks a schedule against a model.

- ``Schedule``, ``Policy``, ``PrunerSpec``/``LRSchedulerSpec``/``ExtensionSpec`` (``model.py``).
- ``Override(instance, key, value)``: one edit; ``parse_override("p.key=value")`` is the one
  parser of the text form (``overrides.py``), ``apply_overrides`` applies edits (``reader.py``).
- ``ArgSpec``, ``ComponentSpec``, ``Registry``, ``Catalog`` (``args.py``).
- ``read_schedule(source, catalog, overrides=(), partial=False)``, ``parse_schedule(data, catalog,
  origin, partial=False)``: ``partial`` keeps null arguments as holes (``Schedule.unset_keys``).
- ``check_round_to(schedule, parameters)``: a ``round_to`` at or above every listed layer's
  structure count (nothing would be pruned) is an error (``rounding.py``).
"""

from .args import DISTILLER_PRUNERS, ArgSpec, Catalog, ComponentSpec, Registry
from .model import (
                    EPOCH_KEYS,
                    SECTIONS,
                    TEXT_ORIGIN,
                    ExtensionSpec,
                    InstanceSpec,
                    LRSchedulerSpec,
                    Override,
                    Policy,
                    PrunerSpec,
                    Schedule,
)
from .overrides import SCHEDULE_WIDE_KEYS, parse_override, parse_overrides, to_overrides
from .reader import apply_overrides, parse_schedule, read_schedule
from .rounding import check_round_to

__all__ = [
    "DISTILLER_PRUNERS", "EPOCH_KEYS", "SCHEDULE_WIDE_KEYS", "SECTIONS", "TEXT_ORIGIN", "ArgSpec", "Catalog",
    "ComponentSpec", "ExtensionSpec", "InstanceSpec", "LRSchedulerSpec", "Override", "Policy", "PrunerSpec",
    "Registry", "Schedule", "apply_overrides", "parse_override", "parse_overrides", "parse_schedule",
    "check_round_to", "read_schedule", "to_overrides",
]
