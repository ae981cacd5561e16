"""Adaptive BatchNorm: re-estimate BatchNorm running statistics of a pruned network on train images.

Pruning (removed filters, removed blocks) shifts the distribution every later BatchNorm sees, so
its stored running mean and variance no longer fit and the raw pruned accuracy says little about
what retraining will reach. EagleEye (Li et al., ECCV 2020) re-estimates those statistics on a few
hundred training images, in train mode and without gradients, before evaluating: the weights do
not change, only the ``running_mean``/``running_var`` buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import Split, to_tensor_batch

#: Train images ``--bn-recalibrate`` uses by default (docs/results.md: on ResNet56 with 6 blocks
#: removed, 512 and 1,024 images give the same Top1, 256 0.8 points less, 64-128 1.3 less).
DEFAULT_RECALIBRATION_IMAGES = 512

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Calibration:
    """Normalised train images (float32 NCHW) and their labels, for recalibration and probes."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_split(cls, split: Split, count: int, device: str = "cpu") -> "Calibration":
        """The first ``count`` images of ``split`` (splits are class-interleaved, so stratified)."""
        head = split.head(count)
        return cls(torch.from_numpy(to_tensor_batch(head.images)).to(device),
                   torch.from_numpy(head.labels).to(device))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> None:
    """Replace every BatchNorm's running statistics by their average over ``images``.

    Runs the model in train mode under ``no_grad`` with ``momentum=None`` (a cumulative average
    over the batches, not an exponential one), then restores each layer's momentum and the
    model's mode. Parameters are untouched; nothing happens when ``images`` is empty.
    """
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)]
    if not norms or images.shape[0] == 0:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    try:
        for chunk in images.split(batch_size):
            model(chunk)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def calibration_loss(model: nn.Module, calibration: Calibration, batch_size: int = 256) -> float:
    """Mean cross-entropy of ``model`` (in eval mode) on ``calibration``'s images."""
    was_training = model.training
    model.eval()
    try:
        total = sum(nn.functional.cross_entropy(model(images), labels, reduction="sum").item()
                    for images, labels in zip(calibration.images.split(batch_size),
                                              calibration.labels.split(batch_size)))
    finally:
        model.train(was_training)
    return total / max(1, len(calibration))
