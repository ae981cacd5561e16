"""Pruning driven by Distiller compression schedules; structures removed with torch-pruning.

Public API
----------
- ``load_schedule(source, overrides=(), partial=False) -> Schedule``: read a schedule (file or
  YAML text) checked against the registered classes, rewritten by ``overrides`` (``Override``s,
  or ``--set`` strings converted at this edge); ``schedule_from_data(data, origin)``,
  ``with_overrides(schedule, overrides)`` likewise (``schedules.py``).
- ``validate_schedule(schedule, model, example_input=None)``: every check against a model.
- ``prune_one_shot(model, schedule, example_input=None) -> PruneReport``: validate ``schedule``
  against ``model``, then apply every one-shot pruner whose policy fires at the schedule's first
  pruning epoch (structures physically removed).
- ``CompressionScheduler(model, schedule, optimizer=None, example_input=None, after=None)``:
  ``pipeline.training.TrainingHooks`` (``on_epoch_begin``, ``on_minibatch_end -> bool``,
  ``on_epoch_end -> bool``; True = structure changed). Fires pruners and lr schedulers at their
  policies' epochs. Sparsity targets are relative to the dense layer (remembered on the model),
  so a scheduler built after ``prune_one_shot`` does not prune those layers again; ``after=<its
  report>`` additionally skips those pruners. ``.report() -> PruneReport``.
- ``PruneReport`` / ``LayerReport`` / ``arch_signature(model)`` (``report.py``).

Plug-in contract (how to add a pruner, criterion, lr scheduler or extension)
----------------------------------------------------------------------------
1. Pruner: subclass ``base.Pruner`` and decorate it with ``registry.register_pruner(*ArgSpec...)``.
   The class name is the Distiller class name used in schedules (``name=`` overrides it).
   Declare every argument as an ``ArgSpec(name, kind, required=, default=, low=, high=,
   high_open=, choices=, example=, help=)``; schedule validation checks types, ranges, unknown
   and missing arguments from these, so the pruner receives ``args`` already checked and with
   defaults (and the schedule-wide ``round_to``) filled in: ``Pruner(name, args)``.
   - ``one_shot = True`` for pruners that act once at their policy epochs (``prune_one_shot``
     applies only these).
   - ``targets() -> [(module_name, "Filters"|"Channels"|"Elements")]`` for the report
     (default: from ``weights`` and ``group_type``).
   - ``check_model(cls, name, args, ctx, where)`` (classmethod): model checks before any work;
     raise ``ScheduleError(f"{where}.<key>=...: <fix>")``.
   - hooks ``on_epoch_begin(ctx, epoch, policies)``, ``on_minibatch_end(ctx, epoch, step,
     steps_per_epoch, policies)``, ``on_epoch_end(ctx, epoch, policies)`` are called at EVERY
     epoch/step with the policies naming this pruner (use ``policy.fires_at(epoch)``,
     ``policy.epochs``, ``policy.starting_epoch``/``ending_epoch``/``frequency``); each returns a
     list of ``StructureRemoval(pruner, layer, group_type, prune_idxs)``; the scheduler removes
     the plans of all pruners of one moment together (torch-pruning, BN and dependants too).
     Masks (fine-grained pruners) are the pruner's own business: apply them in the hooks.
   - ``ctx`` is a ``PruningContext``: ``ctx.model``, ``ctx.example_input``,
     ``ctx.original_counts[(layer, group_type)]`` (dense structure counts; sparsities are
     relative to these), ``ctx.group(...)``, ``ctx.graph()``.
   - Helpers for structured pruners in ``structured.py``: ``structures_to_prune(count,
     fraction)`` (Distiller's rounding), ``kept_count(original, fraction, round_to)``,
     ``plan_removal(ctx, pruner, layer, group_type, fraction, criterion, round_to)``,
     ``ranked_structure_args(default_criterion)``, ``RankedStructurePruner`` (override
     ``fraction(epoch, policies)`` for a gradual ramp).
2. Criterion: a class with ``__call__(model, layer, group_type) -> Tensor`` (one score per
   structure, low = pruned first), decorated ``@criteria.register_criterion("fpgm")``; it then is
   a valid ``criterion:`` value for every ranked pruner.
3. LR scheduler: subclass ``lr_schedulers.EpochLRScheduler`` (``lr(base_lr, steps)``) with
   ``@register_lr_scheduler(...)``. Extension: any class ``(name, args)`` with ``@register_extension``.
4. Add the module's name to ``_PLUGIN_MODULES`` below so importing the package registers it.
   ``pipeline.schedule`` (types, ``ArgSpec``) never imports this package: import from it freely.
"""

from __future__ import annotations

import importlib

from .base import Pruner, PruningContext, StructureRemoval
from .compression import CompressionScheduler, prune_one_shot
from .report import LayerReport, PruneReport, arch_signature
from .schedules import load_schedule, schedule_from_data, validate_schedule, with_overrides

#: Modules whose import registers classes: one-shot structured pruners, lr schedulers, then the
#: extra criteria (FPGM, BN scale), fine-grained and gradual pruners, the residual block pruner.
_PLUGIN_MODULES = ("criteria", "structured", "lr_schedulers", "importance", "magnitude", "gradual", "blocks")
for _module in _PLUGIN_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "CompressionScheduler",
    "LayerReport",
    "PruneReport",
    "Pruner",
    "PruningContext",
    "StructureRemoval",
    "arch_signature",
    "load_schedule",
    "prune_one_shot",
    "schedule_from_data",
    "validate_schedule",
    "with_overrides",
]
