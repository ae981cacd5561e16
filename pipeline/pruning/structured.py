"""One-shot ranked structure pruners: Distiller's L1/L2RankedStructureParameterPruner.

At each epoch a policy fires, every listed layer loses ``desired_sparsity`` of its filters
(``group_type: Filters``, output channels) or channels (``Channels``, input channels), lowest
importance first; torch-pruning removes them with everything coupled to them.

How many: Distiller's rule, ``floor(desired_sparsity * n)`` structures, and never all of them
(one is kept). With ``round_to: k`` (per pruner or schedule-wide) the kept count is then rounded
UP to a multiple of k (so a pruner never removes more than asked), capped at the layer's count.

Coupled groups: one pruner may list several members of one torch-pruning group (on option-B
ResNets, every conv2 and downsample conv feeding one residual stream, as Distiller's own
residual-stream schedules do). The group is pruned once: ranked by its first listed member (its
leader, Distiller's ``group_dependency: Leader``), and removing those structures removes them
from every member. Without ``group_dependency`` the same happens (Distiller would rank each
member alone, which cannot be removed physically), and a log line says so.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from ..errors import ScheduleError
from .base import GROUP_TYPES, Pruner, PruningContext, StructureRemoval, module_name_of, resolve_weight, structure_count
from .criteria import CRITERIA, criterion_names
from .registry import ArgSpec, register_pruner

if TYPE_CHECKING:
    from ..schedule import Policy

log = logging.getLogger(__name__)


def structures_to_prune(count: int, fraction: float) -> int:
    """Distiller's count: ``floor(fraction * count)``, but at least one structure stays (fraction < 1)."""
    to_prune = math.floor(fraction * count)
    return count - 1 if to_prune >= count else to_prune


def round_kept(count: int, kept: int, round_to: int | None) -> int:
    """``kept`` rounded up to a multiple of ``round_to``, never above ``count`` nor below one."""
    if round_to and round_to > 1:
        kept = min(count, math.ceil(kept / round_to) * round_to)
    return max(1, kept)


def kept_count(original: int, fraction: float, round_to: int | None) -> int:
    """Structures a layer of ``original`` structures keeps at sparsity ``fraction``."""
    return round_kept(original, original - structures_to_prune(original, fraction), round_to)


def plan_removal(ctx: PruningContext, pruner: str, layer: str, group_type: str, fraction: float,
                 criterion: str, round_to: int | None) -> StructureRemoval:
    """The lowest-ranked structures of ``layer`` to remove so that it keeps ``kept_count`` of its
    dense count (ties: the lower index is removed first); nothing when it is already that small."""
    count = structure_count(ctx.model.get_submodule(layer), group_type)
    kept = kept_count(ctx.original_counts[(layer, group_type)], fraction, round_to)
    if count <= kept:
        return StructureRemoval(pruner, layer, group_type, ())
    scores = CRITERIA[criterion]()(ctx.model, layer, group_type)
    order = torch.argsort(scores, stable=True)
    return StructureRemoval(pruner, layer, group_type, tuple(sorted(order[: count - kept].tolist())))


def coupled_members(ctx: PruningContext, pruner: str, weights: Sequence[str],
                    group_type: str) -> list[list[str]]:
    """``weights`` split into the coupled groups they belong to, in listed order.

    Each group lists its members as they were listed, so ``group[0]`` is the group's leader.
    """
    groups: list[tuple[frozenset, list[str]]] = []
    for weight in weights:
        coupled = ctx.coupled_layers(module_name_of(weight), group_type, pruner)
        index = next((i for i, (members, _) in enumerate(groups) if members & coupled), None)
        if index is None:
            groups.append((coupled, [weight]))
        else:
            groups[index] = (groups[index][0] | coupled, [*groups[index][1], weight])
    return [members for _, members in groups]


def ranked_structure_args(default_criterion: str) -> tuple[ArgSpec, ...]:
    """The arguments of a ranked structure pruner whose criterion defaults to ``default_criterion``."""
    return (
        ArgSpec("group_type", "str", required=True, choices=GROUP_TYPES, example="Filters",
                help="Filters (output channels) or Channels (input channels)"),
        ArgSpec("desired_sparsity", "float", required=True, low=0.0, high=1.0, high_open=True, example=0.5,
                help="fraction of each layer's structures to remove, in [0, 1)"),
        ArgSpec("weights", "list[str]", required=True, example=["layer1.0.conv1.weight"],
                help="conv weight names, with or without 'module.'"),
        ArgSpec("criterion", "str", default=default_criterion, choices=criterion_names, example="l1",
                help="importance criterion ranking the structures"),
        ArgSpec("round_to", "int", low=1, example=8,
                help="round each layer's kept count up to a multiple of this"),
        ArgSpec("group_dependency", "str", choices=("Leader",), example="Leader",
                help="coupled layers listed together are ranked by the first listed (always so here)"),
    )


class RankedStructurePruner(Pruner):
    """Prunes ``desired_sparsity`` of the listed layers' structures once, at each epoch a policy fires."""

    one_shot: ClassVar[bool] = True

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: PruningContext, where: str) -> None:
        for index, weight in enumerate(args["weights"]):
            key = f"{where}.weights[{index}]"
            param = resolve_weight(ctx.model, weight, key)
            layer = module_name_of(weight)
            if not isinstance(ctx.model.get_submodule(layer), nn.Conv2d) or param.dim() != 4:
                raise ScheduleError(f"{key}={weight!r} is not a convolution weight: {cls.__name__} "
                                    "prunes conv filters/channels; list conv weights only")
            ctx.group(layer, args["group_type"], [0], name)
        if args.get("group_dependency") is None:
            for members in coupled_members(ctx, name, args["weights"], args["group_type"]):
                if len(members) > 1:
                    log.info("%s: %s are coupled: pruned once, ranked by the first, %s, as with "
                             "group_dependency: Leader", where, ", ".join(members), members[0])

    def fraction(self, epoch: int, policies: Sequence["Policy"]) -> float:
        """The fraction to remove at ``epoch`` (overridden by gradual pruners)."""
        return float(self.args["desired_sparsity"])

    def plan(self, ctx: PruningContext, epoch: int, policies: Sequence["Policy"]) -> list[StructureRemoval]:
        """Removals for every listed layer at ``epoch``: one per coupled group, ranked by its leader."""
        fraction = self.fraction(epoch, policies)
        if fraction <= 0:
            return []
        group_type = self.args["group_type"]
        return [plan_removal(ctx, self.name, module_name_of(members[0]), group_type, fraction,
                             self.args["criterion"], self.args.get("round_to"))
                for members in coupled_members(ctx, self.name, self.weights, group_type)]

    def on_epoch_begin(self, ctx: PruningContext, epoch: int,
                       policies: Sequence["Policy"]) -> list[StructureRemoval]:
        if not any(p.fires_at(epoch) for p in policies):
            return []
        return self.plan(ctx, epoch, policies)


@register_pruner(*ranked_structure_args("l1"),
                 summary="one-shot removal of the filters/channels with the lowest mean |w|")
class L1RankedStructureParameterPruner(RankedStructurePruner):
    """Distiller's L1RankedStructureParameterPruner (criterion defaults to l1)."""


@register_pruner(*ranked_structure_args("l2"),
                 summary="one-shot removal of the filters/channels with the lowest L2 norm")
class L2RankedStructureParameterPruner(RankedStructurePruner):
    """Distiller's L2RankedStructureParameterPruner (criterion defaults to l2)."""
