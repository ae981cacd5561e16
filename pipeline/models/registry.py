"""Models by the names Distiller gives them (``resnet56_cifar``), and the built-in networks beyond them.

``MODEL_NAMES`` are the CIFAR ResNets, which every command runs end to end today. ``BUILTIN_NAMES``
adds MLPerf Tiny's ResNet-8 (``resnet8_tiny``) and ShuffleNetV2 x0.5 for CIFAR-10
(``shufflenetv2_x0_5_cifar``): ``create_model`` builds them and ``model_spec`` says what they take,
but the rest of the pipeline (data scaling, depth pruning, the CLI's ``--model``) does not use them yet.
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from .resnet8_tiny import ResNet8Tiny
from .resnet_cifar import ResNetCifar
from .shufflenetv2_cifar import ShuffleNetV2Cifar
from .spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelSpec

_DEPTHS = {f"resnet{d}_cifar": d for d in (20, 32, 44, 56, 110)}
MODEL_NAMES: tuple[str, ...] = tuple(_DEPTHS)

_CIFAR_INPUT = (3, 32, 32)
_SPECS: dict[str, ModelSpec] = {
    **{name: ModelSpec(name, InputSpec(_CIFAR_INPUT, IMAGENET_MEAN, IMAGENET_STD), 10, f"resnet{depth}-*.th",
                       "CIFAR ResNet (He et al. 2016); weights akamaster/pytorch_resnet_cifar10, BSD-2-Clause")
       for name, depth in _DEPTHS.items()},
    "resnet8_tiny": ModelSpec(
        "resnet8_tiny", InputSpec(_CIFAR_INPUT, None, None), 10, "mlperf-tiny-resnet8.pt",
        "MLPerf Tiny image-classification reference ResNet-8; weights mlcommons/tiny, Apache-2.0"),
    "shufflenetv2_x0_5_cifar": ModelSpec(
        "shufflenetv2_x0_5_cifar",
        InputSpec(_CIFAR_INPUT, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)), 10,
        "cifar10_shufflenetv2_x0_5-*.pt",
        "ShuffleNetV2 x0.5 (Ma et al. 2018); weights chenyaofo/pytorch-cifar-models, BSD-3-Clause"),
}
BUILTIN_NAMES: tuple[str, ...] = tuple(_SPECS)
_OTHER_FACTORIES = {"resnet8_tiny": ResNet8Tiny, "shufflenetv2_x0_5_cifar": ShuffleNetV2Cifar}


def model_spec(name: str) -> ModelSpec:
    """The input shape and scaling, classes and checkpoint file pattern of a built-in network."""
    if name not in _SPECS:
        raise ModelError(f"unknown model {name!r}: use one of {', '.join(BUILTIN_NAMES)}")
    return _SPECS[name]


def create_model(name: str, num_classes: int = 10, shortcut: str = "A") -> nn.Module:
    """A freshly initialised model; ``shortcut`` is ``A`` (zero padding) or ``B`` (1x1 conv + BN)
    for the CIFAR ResNets and must stay ``A`` for the other built-ins (which have their own)."""
    model_spec(name)
    if shortcut not in ("A", "B"):
        raise ModelError(f"unknown shortcut option {shortcut!r}: use A (zero padding) or B (1x1 conv)")
    if name in _DEPTHS:
        return ResNetCifar(_DEPTHS[name], num_classes=num_classes, shortcut=shortcut)
    if shortcut != "A":
        raise ModelError(f"--shortcut applies to the CIFAR ResNets only: drop it for {name}")
    return _OTHER_FACTORIES[name](num_classes=num_classes)


def depth_of(name: str) -> int:
    """Depth of a registered CIFAR ResNet (20 for ``resnet20_cifar``)."""
    if name not in _DEPTHS:
        raise ModelError(f"unknown model {name!r}: use one of {', '.join(MODEL_NAMES)}")
    return _DEPTHS[name]
