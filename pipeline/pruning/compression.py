"""Runs a schedule: pruners and lr schedulers fire at their policies' epochs during (re)training.

``CompressionScheduler`` implements ``pipeline.training.TrainingHooks``. ``prune_one_shot`` applies
the one-shot pruners of the schedule's first pruning epoch before any training (what ``edgeprune
run`` does at epoch 0); hand its report to the scheduler (``after=``) so they do not fire twice.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn

from ..errors import ScheduleError
from .base import GROUP_TYPES, Pruner, PruningContext, StructureRemoval
from .blocks import ResidualBlockPruner, remove_blocks, removed_blocks, split_removed
from .depths import fit_depth
from .lr_schedulers import EpochLRScheduler
from .registry import EXTENSIONS, LR_SCHEDULERS, PRUNERS, ArgSpec, register_extension
from .report import ModelSnapshot, PruneReport, build_report

if TYPE_CHECKING:
    from pathlib import Path

    from ..batchnorm import Calibration
    from ..schedule import Policy, Schedule

log = logging.getLogger(__name__)

_THINNING_ARGS = (
    ArgSpec("thinning_func_str", "str", help="Distiller's thinning function (ignored)"),
    ArgSpec("arch", "str", help="Distiller's architecture name (ignored)"),
    ArgSpec("dataset", "str", help="Distiller's data set name (ignored)"),
)


class ThinningExtension:
    """Distiller's FilterRemover/ChannelRemover/StructureRemover: accepted, and a no-op here,
    because pruned structures are always removed physically as the pruner fires."""

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        self.name = name
        self.args = args


for _class_name in ("FilterRemover", "ChannelRemover", "StructureRemover"):
    register_extension(*_THINNING_ARGS, name=_class_name,
                       summary="accepted for Distiller compatibility; removal always happens")(ThinningExtension)


def effective_args(schedule: "Schedule", section: str, name: str) -> dict[str, Any]:
    """An instance's validated arguments with class defaults and the schedule-wide defaults applied."""
    registry = {"pruners": PRUNERS, "lr_schedulers": LR_SCHEDULERS, "extensions": EXTENSIONS}[section]
    spec = getattr(schedule, section)[name]
    where = f"{schedule.source}: {section}.{name}"
    component = registry.get(spec.class_name, where)
    defaults = {k: v for k, v in schedule.defaults().items() if component.arg(k) is not None}
    return component.check_args({**defaults, **spec.args}, where)


def _policies_of(schedule: "Schedule", kind: str, name: str) -> list["Policy"]:
    return [p for p in schedule.policies if p.kind == kind and p.instance == name]


def build_pruners(schedule: "Schedule") -> list[tuple[Pruner, list["Policy"]]]:
    """One pruner per schedule entry, with the policies that name it."""
    built = []
    for name, spec in schedule.pruners.items():
        factory = PRUNERS.get(spec.class_name, f"{schedule.source}: pruners.{name}").factory
        built.append((factory(name, effective_args(schedule, "pruners", name)), _policies_of(schedule, "pruner", name)))
    return built


def check_schedule(schedule: "Schedule", ctx: PruningContext) -> None:
    """Every model-dependent check of ``schedule`` (weights exist, structures prunable, no overlaps)."""
    coupled: dict[tuple[str, str], tuple[str, str, frozenset]] = {}
    for name, spec in schedule.pruners.items():
        where = f"{schedule.source}: pruners.{name}"
        factory = PRUNERS.get(spec.class_name, where).factory
        args = effective_args(schedule, "pruners", name)
        factory.check_model(name, args, ctx, where)
        factory.check_policies(name, args, _policies_of(schedule, "pruner", name), where)
        for layer, kind in factory(name, args).targets():
            if kind not in GROUP_TYPES:
                continue
            group = ctx.coupled_layers(layer, kind, name)
            for (other, other_layer), (other_kind, _, other_group) in coupled.items():
                # Coupled layers listed by one pruner are one group, pruned once (structured.py).
                if group & other_group and other != name:
                    raise ScheduleError(
                        f"{where}.weights: {kind} of {layer} are coupled with {other_kind} of {other_layer} "
                        f"(pruners.{other}), so they would be pruned twice: list each coupled layer once")
            coupled[(name, layer)] = (kind, layer, group)


def without_removed_layers(schedule: "Schedule", model: nn.Module) -> tuple["Schedule", list[str]]:
    """``schedule`` without the weights that lie in blocks already removed from ``model`` (a
    pruner left with none is dropped), and one ``"<pruner>: <weights>"`` line per pruner affected."""
    removed = removed_blocks(model)
    if not removed:
        return schedule, []
    pruners, skipped = {}, []
    for name, spec in schedule.pruners.items():
        kept, gone = split_removed(spec.args.get("weights", []), removed)
        if gone:
            skipped.append(f"{name}: {', '.join(gone)}")
        if kept or not gone:
            pruners[name] = dataclasses.replace(spec, args={**spec.args, "weights": kept}) if gone else spec
    policies = [p for p in schedule.policies if p.kind != "pruner" or p.instance in pruners]
    return dataclasses.replace(schedule, pruners=pruners, policies=policies), skipped


def _refresh_optimizer(optimizer: torch.optim.Optimizer, names: dict[int, str], model: nn.Module) -> None:
    """Point ``optimizer`` at the parameters that replaced pruned ones (momentum of those is reset);
    parameters of removed blocks leave it."""
    current = dict(model.named_parameters())
    for group in optimizer.param_groups:
        fresh = []
        for param in group["params"]:
            name = names.get(id(param))
            if name and name not in current:
                optimizer.state.pop(param, None)
                continue
            replacement = current.get(name, param) if name else param
            if replacement is not param:
                optimizer.state.pop(param, None)
            fresh.append(replacement)
        group["params"] = fresh


class CompressionScheduler:
    """Fires a schedule's pruners and lr schedulers at their policies' epochs (``TrainingHooks``).

    Pruners act in ``on_epoch_begin`` (structured one-shot) and whenever they choose in the other
    hooks; every hook returns True when the model's structure changed. When a hook receives the
    optimizer it also re-points it at the new parameters, since ``on_epoch_begin``'s return value
    is not acted on by the trainer. LR schedulers step at the end of each epoch their policy fires.
    """

    def __init__(self, model: nn.Module, schedule: "Schedule", optimizer: torch.optim.Optimizer | None = None,
                 example_input: torch.Tensor | None = None, after: PruneReport | None = None,
                 calibration: "Calibration | None" = None,
                 block_rankings: dict[tuple[Any, ...], list[str]] | None = None,
                 cache_dir: Path | None = None) -> None:
        self.model = model
        # Names of blocks deeper than the model (cross_depth) and weights of removed blocks are
        # skipped and reported alike.
        schedule, absent = fit_depth(schedule, model)
        schedule, removed = without_removed_layers(schedule, model)
        self.skipped = absent + removed
        self.schedule = schedule
        self.optimizer = optimizer
        self.ctx = PruningContext(model, example_input, origin=schedule.source, calibration=calibration,
                                  block_rankings=block_rankings, cache_dir=cache_dir)
        check_schedule(schedule, self.ctx)
        skip = set(after.pruners_applied) if after else set()
        self.pruners = [(p, pol) for p, pol in build_pruners(schedule) if p.name not in skip]
        self.lr_schedulers: list[tuple[EpochLRScheduler, list[Policy]]] = [
            (LR_SCHEDULERS.get(spec.class_name, schedule.source).factory(
                name, effective_args(schedule, "lr_schedulers", name)), _policies_of(schedule, "lr_scheduler", name))
            for name, spec in schedule.lr_schedulers.items()]
        self.targets = list(dict.fromkeys(t for p, _ in self.pruners for t in p.targets()))
        self.applied: list[str] = []
        self._before = ModelSnapshot.take(model, self.ctx.example_input, self.targets)
        self._removed_before = removed_blocks(model)

    def _refresh(self, names: dict[int, str], optimizer: torch.optim.Optimizer | None) -> None:
        for opt in {id(o): o for o in (optimizer, self.optimizer) if o is not None}.values():
            _refresh_optimizer(opt, names, self.model)

    def _apply(self, removals: Iterable[StructureRemoval], optimizer: torch.optim.Optimizer | None) -> bool:
        removals = [r for r in removals if r.prune_idxs]
        if not removals:
            return False
        names = {id(p): n for n, p in self.model.named_parameters()}
        self.ctx.remove(removals)
        self.applied.extend(r.pruner for r in removals if r.pruner not in self.applied)
        self._refresh(names, optimizer)
        log.info("removed structures from %d layers (%s)", len(removals),
                 ", ".join(sorted({r.pruner for r in removals})))
        return True

    def _remove_blocks(self, epoch: int, optimizer: torch.optim.Optimizer | None) -> bool:
        """Fire the block pruners of ``epoch`` before any other pruner plans, then drop the weights
        of removed blocks from the other pruners (skipped and reported, not an error)."""
        firing = [p for p, pol in self.pruners if isinstance(p, ResidualBlockPruner) and p.fires(epoch, pol)]
        chosen = {p.name: p.choose(self.ctx) for p in firing}
        blocks = [b for names in chosen.values() for b in names]
        if not blocks:
            return False
        names = {id(p): n for n, p in self.model.named_parameters()}
        remove_blocks(self.model, blocks)
        self.ctx.invalidate_graph()
        self.applied.extend(name for name, removed in chosen.items() if removed and name not in self.applied)
        removed = removed_blocks(self.model)
        remaining = []
        for pruner, policies in self.pruners:
            kept, gone = split_removed(pruner.args.get("weights", []), removed)
            if gone:
                self.skipped.append(f"{pruner.name}: {', '.join(gone)}")
                pruner.args["weights"] = kept
                log.info("pruners.%s: skipped %s (in removed blocks)", pruner.name, ", ".join(gone))
            if kept or not gone:
                remaining.append((pruner, policies))
        self.pruners = remaining
        self._refresh(names, optimizer)
        log.info("removed %d residual blocks: %s", len(blocks), ", ".join(blocks))
        return True

    def fire_one_shot(self, epoch: int) -> list[str]:
        """Apply the one-shot pruners whose policies fire at ``epoch`` now; their names."""
        self._remove_blocks(epoch, self.optimizer)
        firing = [(p, pol) for p, pol in self.pruners if p.one_shot and any(x.fires_at(epoch) for x in pol)]
        self._apply([r for p, pol in firing for r in p.on_epoch_begin(self.ctx, epoch, pol)], self.optimizer)
        return [p.name for p, _ in firing]

    def on_epoch_begin(self, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Fire the pruners acting at the start of ``epoch``; True when structures were removed."""
        removed = self._remove_blocks(epoch, optimizer)
        changed = self._apply([r for p, pol in self.pruners for r in p.on_epoch_begin(self.ctx, epoch, pol)],
                              optimizer)
        return removed or changed

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Let pruners re-apply masks or remove structures after an optimizer step."""
        return self._apply([r for p, pol in self.pruners
                            for r in p.on_minibatch_end(self.ctx, epoch, step, steps_per_epoch, pol)], optimizer)

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Fire pruners acting at the end of ``epoch``, then step the lr schedulers active at it."""
        changed = self._apply([r for p, pol in self.pruners for r in p.on_epoch_end(self.ctx, epoch, pol)], optimizer)
        opt = optimizer or self.optimizer
        for scheduler, policies in self.lr_schedulers:
            if opt is not None and any(p.fires_at(epoch) for p in policies):
                scheduler.step(opt)
        return changed

    def report(self) -> PruneReport:
        """Per-layer channels and sparsity now, against the model this scheduler started from."""
        report = build_report(self._before, self.model, self.ctx.example_input, self.targets, self.applied)
        listed = [b for p, _ in self.pruners if isinstance(p, ResidualBlockPruner) for b in p.blocks]
        removed = removed_blocks(self.model)
        report.blocks_removed = [b for b in removed if b not in self._removed_before]
        report.blocks_kept = [b for b in dict.fromkeys(listed) if b not in removed]
        report.pruners_skipped = list(self.skipped)
        return report


def first_pruning_epoch(schedule: "Schedule") -> int | None:
    """The earliest epoch any pruner policy fires at, or None without pruner policies."""
    starts = [min(p.epochs) for p in schedule.policies if p.kind == "pruner" and p.epochs]
    return min(starts) if starts else None


def prune_one_shot(model: nn.Module, schedule: "Schedule", example_input: torch.Tensor | None = None,
                   calibration: "Calibration | None" = None,
                   block_rankings: dict[tuple[Any, ...], list[str]] | None = None,
                   cache_dir: Path | None = None) -> PruneReport:
    """Apply, now, every pruner whose policy fires at the schedule's first pruning epoch.

    Validates the schedule against the model first. One-shot structured pruners remove their
    structures physically and are listed in ``pruners_applied``, so a later
    ``CompressionScheduler(..., after=report)`` skips them. Gradual and fine-grained pruners take
    their first step too, so the accuracy measured after this call (the collapse check) sees their
    zeros; they are not listed, because the training-time scheduler keeps their masks and ramps.
    ``calibration`` (train images) feeds data-driven criteria (ResidualBlockPruner's sensitivity);
    ``block_rankings`` memoises their rankings across calls on copies of one model
    (``PruningContext.block_rankings``); ``cache_dir`` (the settings' cache folder) keeps the
    costly ones (sensitivity) across runs (``PruningContext.cache_dir``).
    """
    scheduler = CompressionScheduler(model, schedule, example_input=example_input, calibration=calibration,
                                     block_rankings=block_rankings, cache_dir=cache_dir)
    epoch = first_pruning_epoch(schedule)
    if epoch is not None:
        scheduler.on_epoch_begin(epoch)
    report = scheduler.report()
    # A one-shot pruner that had nothing to remove (e.g. sparsity 0) still counts as applied.
    report.pruners_applied = [p.name for p, pol in scheduler.pruners if p.one_shot and epoch is not None
                              and any(x.fires_at(epoch) for x in pol)]
    return report
