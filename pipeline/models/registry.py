"""Models by the names Distiller gives them (``resnet56_cifar``)."""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from .resnet_cifar import ResNetCifar

_DEPTHS = {f"resnet{d}_cifar": d for d in (20, 32, 44, 56, 110)}
MODEL_NAMES: tuple[str, ...] = tuple(_DEPTHS)


def create_model(name: str, num_classes: int = 10, shortcut: str = "A") -> nn.Module:
    """A freshly initialised model; ``shortcut`` is ``A`` (zero padding) or ``B`` (1x1 conv + BN)."""
    if name not in _DEPTHS:
        raise ModelError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}")
    if shortcut not in ("A", "B"):
        raise ModelError(f"unknown shortcut option {shortcut!r}: use A (zero padding) or B (1x1 conv)")
    return ResNetCifar(_DEPTHS[name], num_classes=num_classes, shortcut=shortcut)


def depth_of(name: str) -> int:
    """Depth of a registered model (20 for ``resnet20_cifar``)."""
    if name not in _DEPTHS:
        raise ModelError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}")
    return _DEPTHS[name]
