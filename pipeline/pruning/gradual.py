"""Gradual pruners on the AGP ramp: fine-grained (AutomatedGradualPruner) and structured (…_AGP).

Both follow :class:`~pipeline.pruning.agp.AGPRamp` over their policy's
``starting_epoch``..``ending_epoch`` every ``frequency`` epochs, and keep what they pruned zero with
masks between steps (re-applied after every optimizer step), so the network retrains around it.

- ``AutomatedGradualPruner`` zeros the smallest-magnitude elements of each listed weight; the
  tensors stay dense (no speed-up on a dense engine).
- ``L1RankedStructureParameterPruner_AGP`` / ``L2RankedStructureParameterPruner_AGP`` mask whole
  filters or channels, ranked by a criterion (``l1``/``l2``/``fpgm``/``bn_scale``); a structure
  once masked stays masked (it ranks below every live one). When the policy ends (end of epoch
  ``ending_epoch - 1``) the masked structures are removed physically with torch-pruning and the
  hook returns True, so the trainer rebuilds its optimizer for the smaller model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch

from ..errors import ScheduleError
from .agp import AGPRamp
from .base import PruningContext, StructureRemoval, module_name_of, structure_count
from .criteria import CRITERIA
from .importance import STRUCTURE_DIM
from .magnitude import level_mask
from .masks import MaskingPruner, MaskSet, named_weights
from .registry import ArgSpec, register_pruner
from .structured import RankedStructurePruner, coupled_members, kept_count, ranked_structure_args

if TYPE_CHECKING:
    from ..schedule import Policy

log = logging.getLogger(__name__)

_SPARSITY_ARGS = (
    ArgSpec("initial_sparsity", "float", required=True, low=0.0, high=1.0, high_open=True, example=0.05,
            help="sparsity of the first pruning step, in [0, 1)"),
    ArgSpec("final_sparsity", "float", required=True, low=0.0, high=1.0, high_open=True, example=0.7,
            help="sparsity reached at the last pruning step of the policy, in [0, 1)"),
)


def agp_ramp(policy: "Policy", initial_sparsity: float, final_sparsity: float, where: str) -> AGPRamp:
    """The ramp a policy drives; a policy that cannot drive one is a ScheduleError with the fix."""
    if policy.listed_epochs is not None:
        raise ScheduleError(f"{where}: an AGP pruner's policy needs starting_epoch, ending_epoch and "
                            f"frequency, not epochs: {list(policy.listed_epochs)}: e.g. 0, 30, 2")
    ramp = AGPRamp(initial_sparsity, final_sparsity, policy.starting_epoch or 0, policy.ending_epoch or 0,
                   policy.frequency)
    if ramp.span <= 0:
        raise ScheduleError(
            f"{where}: the policy's epochs {ramp.starting_epoch}..{ramp.ending_epoch} every {ramp.frequency} "
            "leave room for one pruning step only: set ending_epoch >= starting_epoch + frequency + 1")
    return ramp


class _AGPMixin:
    """The ramp bookkeeping shared by the fine-grained and the structured AGP pruners."""

    name: str
    args: dict[str, Any]

    @classmethod
    def check_sparsities(cls, args: Mapping[str, Any], where: str) -> None:
        if args["final_sparsity"] <= args["initial_sparsity"]:
            raise ScheduleError(f"{where}.final_sparsity={args['final_sparsity']} must exceed "
                                f"initial_sparsity={args['initial_sparsity']}: e.g. 0.05 -> 0.7")

    @classmethod
    def check_policies(cls, name: str, args: Mapping[str, Any], policies: Sequence["Policy"], where: str) -> None:
        """Every policy naming this pruner must give a ramp of at least two steps."""
        for policy in policies:
            agp_ramp(policy, args["initial_sparsity"], args["final_sparsity"], where)

    def firing_ramp(self, epoch: int, policies: Sequence["Policy"]) -> AGPRamp | None:
        """The ramp of the policy that fires at ``epoch``, if any."""
        where = f"pruners.{self.name}"
        self.check_policies(self.name, self.args, policies, where)
        for policy in policies:
            if policy.fires_at(epoch):
                return agp_ramp(policy, self.args["initial_sparsity"], self.args["final_sparsity"], where)
        return None


@register_pruner(
    *_SPARSITY_ARGS,
    ArgSpec("weights", "list[str]", required=True, example=["layer3.1.conv1.weight"],
            help="conv/linear weight names, with or without 'module.'"),
    summary="fine-grained magnitude pruning on the AGP cubic ramp (Zhu & Gupta 2017)")
class AutomatedGradualPruner(_AGPMixin, MaskingPruner):
    """Zhu & Gupta's AGP: the smallest-magnitude elements of each weight, to the ramp's sparsity."""

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: PruningContext, where: str) -> None:
        super().check_model(name, args, ctx, where)
        cls.check_sparsities(args, where)

    def update_masks(self, ctx: PruningContext, epoch: int, policies: Sequence["Policy"]) -> None:
        ramp = self.firing_ramp(epoch, policies)
        if ramp is None:
            return
        target = ramp.target(epoch)
        params = named_weights(ctx.model)
        for weight_name in self.weights:
            # Masked elements are zero, so they are the smallest and stay pruned: the ramp only grows.
            self.masks.set(weight_name, level_mask(params[weight_name], target))
        log.debug("%s: epoch %d, target sparsity %.4f", self.name, epoch, target)


def rank_for_masking(ctx: PruningContext, layer: str, group_type: str, fraction: float, criterion: str,
                     round_to: int | None, masked: set[int]) -> list[int]:
    """Indices to mask so ``layer`` keeps ``kept_count`` of its dense structures.

    Already-masked structures rank below every live one, so the masked set only grows even under a
    criterion (FPGM, BN scale) that would not score an all-zero structure lowest.
    """
    count = structure_count(ctx.model.get_submodule(layer), group_type)
    to_mask = max(0, count - kept_count(ctx.original_counts[(layer, group_type)], fraction, round_to))
    scores = CRITERIA[criterion]()(ctx.model, layer, group_type).detach().float().clone()
    if masked:
        scores[sorted(masked)] = float("-inf")
    return sorted(torch.argsort(scores, stable=True)[:to_mask].tolist())


def structure_mask(weight: torch.Tensor, group_type: str, idxs: Sequence[int]) -> torch.Tensor:
    """Keep-mask of ``weight`` with the filters/channels ``idxs`` cleared."""
    keep = torch.ones_like(weight, dtype=torch.bool)
    keep.index_fill_(STRUCTURE_DIM[group_type], torch.tensor(list(idxs), dtype=torch.long), False)
    return keep


class RankedStructureAGP(_AGPMixin, MaskingPruner, RankedStructurePruner):
    """Structured AGP: masks on the ramp, physical removal when the policy ends."""

    one_shot: ClassVar[bool] = False

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        super().__init__(name, args)
        #: layer -> masked structure indices (indices of the model as it is during the ramp).
        self.masked: dict[str, set[int]] = {}
        self.removed = False

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: PruningContext, where: str) -> None:
        super().check_model(name, args, ctx, where)
        cls.check_sparsities(args, where)

    def update_masks(self, ctx: PruningContext, epoch: int, policies: Sequence["Policy"]) -> None:
        ramp = None if self.removed else self.firing_ramp(epoch, policies)
        if ramp is None:
            return
        fraction = ramp.target(epoch)
        group_type = self.args["group_type"]
        params = named_weights(ctx.model)
        # A coupled group is ranked by its leader; its structures are masked in every listed member.
        for members in coupled_members(ctx, self.name, self.weights, group_type):
            leader = module_name_of(members[0])
            idxs = rank_for_masking(ctx, leader, group_type, fraction, self.args["criterion"],
                                    self.args.get("round_to"), self.masked.get(leader, set()))
            self.masked[leader] = set(idxs)
            for weight_name in members:
                self.masks.set(weight_name, structure_mask(params[weight_name], group_type, idxs))

    def on_epoch_end(self, ctx: PruningContext, epoch: int,
                     policies: Sequence["Policy"]) -> list[StructureRemoval]:
        ends_now = any(p.ending_epoch is not None and epoch == p.ending_epoch - 1 for p in policies)
        if self.removed or not ends_now or not self.masked:
            return []
        self.removed = True
        removals = [StructureRemoval(self.name, layer, self.args["group_type"], tuple(sorted(idxs)))
                    for layer, idxs in self.masked.items()]
        # The masked structures leave the model; nothing of them is left to mask.
        self.masks = MaskSet()
        self.masked = {}
        return removals


def _structured_agp_args(default_criterion: str) -> tuple[ArgSpec, ...]:
    ranked = [a for a in ranked_structure_args(default_criterion) if a.name != "desired_sparsity"]
    return (*_SPARSITY_ARGS, *ranked)


@register_pruner(*_structured_agp_args("l1"),
                 summary="structured AGP: filters/channels masked on the cubic ramp, removed when it ends")
class L1RankedStructureParameterPruner_AGP(RankedStructureAGP):
    """Distiller's L1RankedStructureParameterPruner_AGP (criterion defaults to l1)."""


@register_pruner(*_structured_agp_args("l2"),
                 summary="structured AGP ranked by L2 norm: masked on the cubic ramp, removed when it ends")
class L2RankedStructureParameterPruner_AGP(RankedStructureAGP):
    """Distiller's L2RankedStructureParameterPruner_AGP (criterion defaults to l2)."""
