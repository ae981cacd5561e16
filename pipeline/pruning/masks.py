"""Element masks that keep fine-grained zeros in place while the rest of the network retrains.

A pruner decides *which* elements of a weight tensor are zero; a :class:`MaskSet` keeps them zero.
Re-applying the masks after every optimizer step is what makes fine-grained pruning survive
retraining: SGD with momentum or weight decay would otherwise regrow the zeroed weights. The
optimizer's momentum buffers are masked too, so a pruned weight carries no stale velocity into
later steps.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..models import canonical_name
from .base import Pruner, PruningContext, StructureRemoval

if TYPE_CHECKING:
    from ..schedule import Policy

log = logging.getLogger(__name__)


def named_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The model's parameters by canonical name (no ``module.`` prefix)."""
    return {canonical_name(name): param for name, param in model.named_parameters()}


class MaskSet:
    """Boolean keep-masks by parameter name (True keeps the element)."""

    def __init__(self) -> None:
        self._masks: dict[str, torch.Tensor] = {}

    def __contains__(self, name: str) -> bool:
        return canonical_name(name) in self._masks

    def __len__(self) -> int:
        return len(self._masks)

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def get(self, name: str) -> torch.Tensor | None:
        """The keep-mask of ``name``, or None when it is not masked."""
        return self._masks.get(canonical_name(name))

    def set(self, name: str, keep: torch.Tensor) -> None:
        """Record ``keep`` for ``name``, combined with any mask it already has.

        Masks only ever grow: two pruners on one tensor keep the union of their zeros, as in
        Distiller where each pruner writes its mask over weights the other already zeroed.
        """
        name = canonical_name(name)
        keep = keep.detach().to(torch.bool)
        old = self._masks.get(name)
        if old is not None and old.shape == keep.shape:
            keep = keep & old.to(keep.device)
        self._masks[name] = keep

    def remove(self, name: str) -> None:
        """Forget the mask of ``name`` (its zeros stay, but may regrow)."""
        self._masks.pop(canonical_name(name), None)

    @torch.no_grad()
    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero the masked elements of the model's weights and of the optimizer's momentum."""
        params = named_weights(model)
        self.refit(params)
        for name, keep in self._masks.items():
            param = params.get(name)
            if param is None:
                continue
            keep = keep.to(param.device)
            param.mul_(keep)
            if optimizer is not None:
                _mask_optimizer_state(optimizer, param, keep)

    def refit(self, params: Mapping[str, torch.Tensor]) -> None:
        """Rebuild masks whose tensor changed shape (structures removed) from its zero pattern.

        Masked elements are exactly zero, so after torch-pruning slices a tensor the surviving
        zeros are where the sliced mask would be; a vanished tensor loses its mask.
        """
        for name in list(self._masks):
            param = params.get(name)
            if param is None:
                log.debug("mask of %s dropped: the parameter no longer exists", name)
                del self._masks[name]
            elif param.shape != self._masks[name].shape:
                self._masks[name] = param.detach() != 0


def _mask_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor,
                          keep: torch.Tensor) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key in ("momentum_buffer", "exp_avg"):
        buffer = state.get(key)
        if isinstance(buffer, torch.Tensor) and buffer.shape == keep.shape:
            buffer.mul_(keep)


class MaskingPruner(Pruner):
    """A pruner that zeros elements through masks and keeps them zero for the rest of training.

    Subclasses compute masks in :meth:`update_masks` at each epoch one of their policies fires;
    the masks are applied at once and again after every optimizer step (``on_minibatch_end``).
    They stay applied after the policy's last epoch (Distiller's ``keep_mask: true``), because a
    retraining run that let pruned weights regrow would report a sparsity it no longer has.
    """

    def __init__(self, name: str, args: Mapping[str, object]) -> None:
        super().__init__(name, args)
        self.masks = MaskSet()

    def update_masks(self, ctx: PruningContext, epoch: int, policies: Sequence["Policy"]) -> None:
        """Recompute ``self.masks`` for ``epoch`` (called only at epochs a policy fires)."""
        raise NotImplementedError

    def on_epoch_begin(self, ctx: PruningContext, epoch: int,
                       policies: Sequence["Policy"]) -> list[StructureRemoval]:
        if any(p.fires_at(epoch) for p in policies):
            self.update_masks(ctx, epoch, policies)
        self.masks.apply(ctx.model)
        return []

    def on_minibatch_end(self, ctx: PruningContext, epoch: int, step: int, steps_per_epoch: int,
                         policies: Sequence["Policy"]) -> list[StructureRemoval]:
        self.masks.apply(ctx.model)
        return []
