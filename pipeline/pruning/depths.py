"""One schedule for every depth of a CIFAR ResNet family (``cross_depth: true``).

A schedule written for ResNet56 names blocks ``layerS.0`` to ``layerS.8`` in each stage; ResNet32
has ``layerS.0`` to ``layerS.4``, ResNet20 ``layerS.0`` to ``layerS.2``. With the schedule-wide
key ``cross_depth: true`` the names of blocks deeper than the model has (block index at or past
its blocks per stage) are dropped from each pruner's ``weights`` and ``blocks`` and reported in
``PruneReport.pruners_skipped``, the way weights of a removed block are; a pruner left with no
name is dropped with its policies. Sparsities then apply to the names the model has
(``ResidualBlockPruner`` removes ``floor(desired_sparsity x listed blocks the model has)``).

Only such names are dropped: a name whose stage the model lacks, whose index is not a number, or
whose tensor a block of that stage does not have (``layer1.8.conv3.weight``) still fails
validation with one line, so a typo is never mistaken for depth. Without the key every name must
exist, as in Distiller.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING, Any

from torch import nn

from ..models import canonical_name
from ..models.resnet_cifar import BasicBlock

if TYPE_CHECKING:
    from ..schedule import Schedule

#: Pruner arguments that hold lists of weight or block names.
NAME_LISTS = ("weights", "blocks")
#: ``layer<stage>.<block>`` with an optional tensor path inside the block.
_BLOCK_NAME = re.compile(r"^(?P<stage>layer\d+)\.(?P<index>\d+)(?:\.(?P<rest>.+))?$")
#: Appended to a skipped line, telling it apart from weights of removed blocks.
ABSENT_NOTE = "(blocks this model does not have)"


def absent_from(model: nn.Module, name: str) -> bool:
    """Whether ``name`` (a block, or a tensor inside one) lies in a block deeper than ``model``'s
    stage has, and names what such a block holds (``layer1.8.conv1.weight`` on ResNet20, not
    ``layer1.8.conv3.weight``)."""
    match = _BLOCK_NAME.match(canonical_name(name))
    if match is None:
        return False
    stage = getattr(model, match["stage"], None)
    if not isinstance(stage, nn.Sequential) or int(match["index"]) < len(stage):
        return False
    # Deeper blocks are identity blocks: a tensor inside one must be one such a block holds.
    return match["rest"] is None or match["rest"] in _identity_block_tensors()


@functools.lru_cache(maxsize=1)
def _identity_block_tensors() -> frozenset[str]:
    """Parameter names inside a residual block with an identity shortcut (``conv1.weight`` ...);
    from a block built here, since the model's own may have been removed already."""
    return frozenset(name for name, _ in BasicBlock(16, 16, 1, "A").named_parameters())


def fit_depth(schedule: "Schedule", model: nn.Module) -> tuple["Schedule", list[str]]:
    """``schedule`` without the names of blocks ``model`` does not have, when the schedule says
    ``cross_depth: true`` (else unchanged), and one ``"<pruner>: <names> (...)"`` line per pruner
    affected."""
    if not schedule.cross_depth:
        return schedule, []
    pruners, skipped = {}, []
    for name, spec in schedule.pruners.items():
        args: dict[str, Any] = dict(spec.args)
        gone: list[str] = []
        for key in NAME_LISTS:
            if isinstance(args.get(key), list):
                gone += [n for n in args[key] if absent_from(model, n)]
                args[key] = [n for n in args[key] if not absent_from(model, n)]
        if gone:
            skipped.append(f"{name}: {', '.join(gone)} {ABSENT_NOTE}")
        if not gone:
            pruners[name] = spec
        elif any(args.get(key) for key in NAME_LISTS):
            pruners[name] = dataclasses.replace(spec, args=args)
    policies = [p for p in schedule.policies if p.kind != "pruner" or p.instance in pruners]
    return dataclasses.replace(schedule, pruners=pruners, policies=policies), skipped
