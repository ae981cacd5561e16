"""Depth pruning: ``ResidualBlockPruner`` removes whole residual blocks with identity shortcuts.

On OpenVINO CPU a CIFAR ResNet's latency is nearly proportional to its number of residual blocks,
so removing blocks is the structure removal that buys time almost one for one. A removed block
is replaced in its ``Sequential`` by a :class:`RemovedBlock` (an identity with no parameters):
the names of every other module stay as they are, so filter/channel pruners of the same schedule
still name the blocks that remain, and the exported ONNX loses the block's two ``Conv`` nodes.

Only a block whose output has its input's shape can go (its shortcut is the identity); the first
block of a stage, which downsamples, cannot.

Block criteria (``criterion:``), low score = removed first:
- ``sensitivity`` (default): the cross-entropy on (at most 256 of) the context's calibration train images of the
  network with that block alone removed, after re-estimating BatchNorm statistics (adaptive BN);
  above random's mean with 6 and with 12 blocks removed (docs/results.md);
- ``l1_bn2``: mean |gamma| of the block's last BatchNorm (the block's output scale); on the
  pretrained ResNet56 below random's mean with 6 blocks removed, above it with 12;
- ``random``: a seeded random order, the baseline criteria are measured against.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..batchnorm import Calibration, calibration_loss, recalibrate_bn
from ..errors import ScheduleError
from ..models import canonical_name
from ..models.resnet_cifar import BasicBlock
from .base import Pruner, PruningContext
from .registry import ArgSpec, register_pruner
from .structured import structures_to_prune

if TYPE_CHECKING:
    from ..schedule import Policy

log = logging.getLogger(__name__)

#: Train images the ``sensitivity`` criterion probes each block with (at most).
SENSITIVITY_IMAGES = 256


class RemovedBlock(nn.Identity):
    """Stands where a residual block was removed: passes its input on, holds no parameters."""


def removed_blocks(model: nn.Module) -> list[str]:
    """Names of the blocks removed from ``model``, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, RemovedBlock)]


def identity_blocks(model: nn.Module) -> list[str]:
    """Names of the residual blocks that may be removed (identity shortcut), in module order."""
    return [name for name, module in model.named_modules()
            if isinstance(module, BasicBlock) and module.downsample is None]


def inside(name: str, blocks: Iterable[str]) -> bool:
    """Whether the module or parameter ``name`` lies in one of ``blocks``."""
    name = canonical_name(name)
    return any(name == block or name.startswith(block + ".") for block in blocks)


def remove_blocks(model: nn.Module, blocks: Sequence[str]) -> None:
    """Replace each named block by a :class:`RemovedBlock` in its parent module."""
    for block in blocks:
        parent_name, _, child = block.rpartition(".")
        setattr(model.get_submodule(parent_name), child, RemovedBlock())


BlockCriterion = Callable[[nn.Module, Sequence[str], "Calibration | None", int], list[float]]


def _l1_bn2(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None, seed: int) -> list[float]:
    return [float(model.get_submodule(b).bn2.weight.detach().abs().mean()) for b in blocks]


def _random(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None, seed: int) -> list[float]:
    return torch.rand(len(blocks), generator=torch.Generator().manual_seed(seed)).tolist()


def _sensitivity(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None,
                 seed: int) -> list[float]:
    if calibration is None or len(calibration) == 0:
        raise ScheduleError("criterion sensitivity ranks blocks on train images, and none were given: "
                            "prune through `edgeprune run`/`sweep` (which pass them), or use criterion: l1_bn2")
    # The first images only: each block costs two passes over them (ResNet56: 25 blocks).
    probe_set = Calibration(calibration.images[:SENSITIVITY_IMAGES], calibration.labels[:SENSITIVITY_IMAGES])
    scores = []
    for block in blocks:
        probe = copy.deepcopy(model)
        remove_blocks(probe, [block])
        recalibrate_bn(probe, probe_set.images)
        scores.append(calibration_loss(probe, probe_set))
    return scores


#: Block criterion name -> scores of the given blocks (low = removed first).
BLOCK_CRITERIA: dict[str, BlockCriterion] = {"sensitivity": _sensitivity, "l1_bn2": _l1_bn2, "random": _random}


def rank_blocks(model: nn.Module, blocks: Sequence[str], criterion: str, calibration: Calibration | None = None,
                seed: int = 0) -> list[str]:
    """``blocks`` ordered by ``criterion``, the one to remove first leading (ties: module order)."""
    scores = BLOCK_CRITERIA[criterion](model, blocks, calibration, seed)
    return [blocks[i] for i in sorted(range(len(blocks)), key=lambda i: (scores[i], i))]


@register_pruner(
    ArgSpec("desired_sparsity", "float", required=True, low=0.0, high=1.0, high_open=True, example=0.4,
            help="share of the listed blocks to remove (floor, at least one is kept), in [0, 1)"),
    ArgSpec("blocks", "list[str]", required=True, example=["layer1.1", "layer2.1"],
            help="residual blocks with an identity shortcut, with or without 'module.'"),
    ArgSpec("criterion", "str", default="sensitivity", choices=tuple(BLOCK_CRITERIA), example="sensitivity",
            help="how blocks are ranked"),
    ArgSpec("seed", "int", default=0, low=0, example=0, help="seed of criterion random"),
    summary="one-shot removal of whole residual blocks (depth pruning)")
class ResidualBlockPruner(Pruner):
    """Removes ``desired_sparsity`` of the listed blocks, lowest-ranked first, at each policy epoch.

    The compression scheduler asks :meth:`choose` before any other pruner of the same moment
    plans, so filter/channel pruners prune the blocks that remain.
    """

    one_shot: ClassVar[bool] = True

    @property
    def blocks(self) -> list[str]:
        return [canonical_name(b) for b in self.args["blocks"]]

    def targets(self) -> list[tuple[str, str]]:
        return []

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: PruningContext, where: str) -> None:
        seen: set[str] = set()
        for index, block in enumerate(args["blocks"]):
            key, canonical = f"{where}.blocks[{index}]", canonical_name(block)
            try:
                module = ctx.model.get_submodule(canonical)
            except AttributeError:
                module = None
            if isinstance(module, RemovedBlock):
                continue
            if not isinstance(module, BasicBlock):
                raise ScheduleError(f"{key}={block!r} is not a residual block of this model: "
                                    f"name blocks such as {', '.join(identity_blocks(ctx.model)[:2])}")
            if module.downsample is not None:
                raise ScheduleError(f"{key}={block!r} is a downsampling block (its shortcut changes the shape), "
                                    "which cannot be removed: list only blocks after the first of each stage")
            if canonical in seen:
                raise ScheduleError(f"{key}={block!r} is listed twice: list each block once")
            seen.add(canonical)

    def fires(self, epoch: int, policies: Sequence["Policy"]) -> bool:
        return any(p.fires_at(epoch) for p in policies)

    def choose(self, ctx: PruningContext) -> list[str]:
        """The blocks to remove now, so that ``floor(desired_sparsity * listed)`` are gone in all."""
        blocks = self.blocks
        gone = set(removed_blocks(ctx.model))
        remaining = [b for b in blocks if b not in gone]
        need = structures_to_prune(len(blocks), float(self.args["desired_sparsity"])) - (len(blocks) - len(remaining))
        if need <= 0:
            return []
        criterion, seed = self.args["criterion"], self.args["seed"]
        key = (criterion, seed, tuple(remaining))
        memo = ctx.block_rankings if ctx.block_rankings is not None else {}
        if key not in memo:
            memo[key] = rank_blocks(ctx.model, remaining, criterion, ctx.calibration, seed)
        return memo[key][:need]


def split_removed(weights: Sequence[str], removed: Sequence[str]) -> tuple[list[str], list[str]]:
    """``weights`` split into those outside and those inside the ``removed`` blocks."""
    kept = [w for w in weights if not inside(w, removed)]
    return kept, [w for w in weights if inside(w, removed)]
