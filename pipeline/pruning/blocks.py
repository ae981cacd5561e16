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
  above random's mean with 6 and with 12 blocks removed (docs/results.md). Two passes per block
  (ResNet56: 25 blocks, minutes on 2 cores), so it prints a line per block to stderr and, given a
  cache folder (``PruningContext.cache_dir``), keeps the scores in ``<cache>/block_rankings``
  under a digest of everything they depend on: the blocks, the network's structure and weights,
  the probe images and labels, and their device;
- ``l1_bn2``: mean |gamma| of the block's last BatchNorm (the block's output scale); on the
  pretrained ResNet56 below random's mean with 6 blocks removed, above it with 12;
- ``random``: a seeded random order, the baseline criteria are measured against.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..batchnorm import Calibration, calibration_loss, recalibrate_bn
from ..errors import ScheduleError
from ..files import atomic_write_text
from ..models import canonical_name
from ..models.resnet_cifar import BasicBlock
from ..progress import ItemLines, announce
from .base import Pruner, PruningContext
from .criteria import weight_of
from .registry import ArgSpec, register_pruner
from .structured import structures_to_prune

if TYPE_CHECKING:
    from ..schedule import Policy

log = logging.getLogger(__name__)

#: Train images the ``sensitivity`` criterion probes each block with (at most).
SENSITIVITY_IMAGES = 256
#: Part of every cached ranking's digest: bump it when the probe changes, so old scores stop matching.
SENSITIVITY_VERSION = 1
#: Cached sensitivity scores, under the settings' cache folder.
RANKINGS_FOLDER = "block_rankings"


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


#: ``(model, blocks, calibration, seed, cache_dir) -> scores``, low = removed first.
BlockCriterion = Callable[[nn.Module, Sequence[str], "Calibration | None", int, "Path | None"], list[float]]


def _l1_bn2(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None, seed: int,
            cache_dir: Path | None = None) -> list[float]:
    return [float(weight_of(model.get_submodule(f"{b}.bn2")).detach().abs().mean()) for b in blocks]


def _random(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None, seed: int,
            cache_dir: Path | None = None) -> list[float]:
    return torch.rand(len(blocks), generator=torch.Generator().manual_seed(seed)).tolist()


def _probe_loss(model: nn.Module, block: str, probe_set: Calibration) -> float:
    """The loss on ``probe_set`` of a copy of ``model`` without ``block``, BatchNorm re-estimated."""
    probe = copy.deepcopy(model)
    remove_blocks(probe, [block])
    recalibrate_bn(probe, probe_set.images)
    return calibration_loss(probe, probe_set)


def sensitivity_scores(model: nn.Module, blocks: Sequence[str], calibration: Calibration | None, seed: int = 0,
                       cache_dir: Path | None = None) -> list[float]:
    """Each block's ``_probe_loss`` on the first ``SENSITIVITY_IMAGES`` calibration images, a
    line per block on stderr; read from ``cache_dir`` when computed there before for the same
    blocks, structure, weights, images and device (``seed`` plays no part)."""
    if calibration is None or len(calibration) == 0:
        raise ScheduleError("criterion sensitivity ranks blocks on train images, and none were given: "
                            "prune through `edgeprune run`/`sweep` (which pass them), or use criterion: l1_bn2")
    probe_set = Calibration(calibration.images[:SENSITIVITY_IMAGES], calibration.labels[:SENSITIVITY_IMAGES])
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / RANKINGS_FOLDER / f"{_sensitivity_digest(model, blocks, probe_set)}.json"
        cached = _read_scores(path, blocks)
        if cached is not None:
            return cached
    kept = f", then kept in {path.parent} for these weights and images" if path else ""
    announce(f"ranking {len(blocks)} residual blocks by sensitivity: each removed alone, BatchNorm "
             f"re-estimated and the loss taken on {len(probe_set)} train images (two passes a block){kept}")
    lines = ItemLines("block", len(blocks))
    scores = []
    for block in blocks:
        scores.append(_probe_loss(model, block, probe_set))
        lines.item(block, f"loss {scores[-1]:.4f}")
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"version": SENSITIVITY_VERSION, "blocks": list(blocks),
                                                "scores": scores, "images": len(probe_set)}, indent=1))
        except OSError as exc:  # the ranking stands; only the next run pays for it again
            log.warning("block ranking not kept in %s: %s", path.parent, exc)
    return scores


def _sensitivity_digest(model: nn.Module, blocks: Sequence[str], probe_set: Calibration) -> str:
    """What the scores depend on, hashed: the probe, the blocks, structure, weights, images."""
    digest = hashlib.sha256(json.dumps({"version": SENSITIVITY_VERSION, "blocks": list(blocks),
                                        "structure": repr(model), "device": str(probe_set.images.device)}
                                       ).encode())
    tensors = [*model.state_dict().items(), ("images", probe_set.images), ("labels", probe_set.labels)]
    for name, tensor in tensors:
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def _read_scores(path: Path, blocks: Sequence[str]) -> list[float] | None:
    """The cached scores of ``blocks`` at ``path``; None when absent or not a well-formed entry."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entry = entry if isinstance(entry, dict) else {}
    scores = entry.get("scores")
    if entry.get("blocks") != list(blocks) or not isinstance(scores, list) or len(scores) != len(blocks) \
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores):
        log.warning("%s: not a ranking of these blocks; computing it again", path)
        return None
    return [float(v) for v in scores]


#: Block criterion name -> scores of the given blocks (low = removed first).
BLOCK_CRITERIA: dict[str, BlockCriterion] = {"sensitivity": sensitivity_scores, "l1_bn2": _l1_bn2,
                                             "random": _random}


def rank_blocks(model: nn.Module, blocks: Sequence[str], criterion: str, calibration: Calibration | None = None,
                seed: int = 0, cache_dir: Path | None = None) -> list[str]:
    """``blocks`` ordered by ``criterion``, the one to remove first leading (ties: module order);
    ``cache_dir``: where a costly criterion (sensitivity) keeps its scores."""
    scores = BLOCK_CRITERIA[criterion](model, blocks, calibration, seed, cache_dir)
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
            memo[key] = rank_blocks(ctx.model, remaining, criterion, ctx.calibration, seed, ctx.cache_dir)
        return memo[key][:need]


def split_removed(weights: Sequence[str], removed: Sequence[str]) -> tuple[list[str], list[str]]:
    """``weights`` split into those outside and those inside the ``removed`` blocks."""
    kept = [w for w in weights if not inside(w, removed)]
    return kept, [w for w in weights if inside(w, removed)]
