"""MLPerf Tiny's image-classification reference ResNet-8 ("CIFAR10_ResNetv1"), written for its Keras weights.

Module names follow ``mlperf-tiny-resnet8.pt`` (a state dict converted from the benchmark's Keras
file): stem ``conv1 bn1``; ``stack1`` (16 channels, identity shortcut), ``stack2`` and ``stack3``
(32 and 64 channels, stride 2, a 1x1 ``shortcut`` convolution without BatchNorm); an average
pool over the whole 8x8 map and ``fc``. What the Keras model does and PyTorch does not by default:
- TensorFlow "same" padding: for stride 2 on an even size the extra padding row and column go at
  the bottom and right, so those convolutions pad explicitly (``SamePadConv2d``);
- every convolution has a bias; every BatchNorm has eps 1e-3 (Keras' default);
- the input is RGB pixels in 0-255 without normalisation.
The Keras model ends in a softmax; ``forward`` returns the logits before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Keras' BatchNormalization default epsilon.
KERAS_BN_EPS = 1e-3


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial axis: the output has
    ceil(size / stride) positions and an odd total puts the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """A convolution with TensorFlow "same" padding, asymmetric where TensorFlow's is."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        left, right = same_padding(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS)


class ResidualStack(nn.Module):
    """conv-bn-relu-conv-bn plus a shortcut (identity, or a 1x1 convolution where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = SamePadConv2d(in_channels, channels, 3, stride)
        self.bn1 = _bn(channels)
        self.conv2 = SamePadConv2d(channels, channels, 3)
        self.bn2 = _bn(channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = SamePadConv2d(in_channels, channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(branch + identity)


class ResNet8Tiny(nn.Module):
    """The MLPerf Tiny ResNet-8 (78,186 parameters at 10 classes); input RGB 0-255, NCHW."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = SamePadConv2d(3, 16, 3)
        self.bn1 = _bn(16)
        self.stack1 = ResidualStack(16, 16, 1)
        self.stack2 = ResidualStack(16, 32, 2)
        self.stack3 = ResidualStack(32, 64, 2)
        # Keras pools with a window of the whole final map (8x8 at 32x32 input); a global
        # average is the same there and also defined at other input sizes.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
