"""ShuffleNetV2 (Ma et al. 2018) for 32x32 inputs, written for chenyaofo's CIFAR-10 x0.5 weights.

Module names follow ``cifar10_shufflenetv2_x0_5-*.pt``: a stem ``conv1`` (3x3 stride 1, BatchNorm,
ReLU; no max-pool at this resolution), ``stage2..4`` of units, ``conv5`` (1x1, BatchNorm, ReLU),
a global average and ``fc``. A unit of stride 2 feeds its whole input to two branches
(``branch1``: depthwise 3x3 stride 2, BN, 1x1, BN, ReLU; ``branch2``: 1x1, BN, ReLU, depthwise
3x3 stride 2, BN, 1x1, BN, ReLU) and concatenates them; a unit of stride 1 splits its channels
in halves, passes the second through ``branch2`` and concatenates it after the first. Every unit
ends with a channel shuffle of two groups.
"""

from __future__ import annotations

import torch
from torch import nn

#: Output channels of the stem, stages 2-4 and conv5 at width multiplier 0.5.
X0_5_CHANNELS = (24, 48, 96, 192, 1024)
STAGE_UNITS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (channel c of group g goes to c * groups + g)."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ShuffleUnit(nn.Module):
    """One ShuffleNetV2 unit; ``stride`` 2 halves the resolution and uses both branches."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2) or out_channels % 2 or (stride == 1 and in_channels != out_channels):
            raise ValueError(f"no ShuffleNetV2 unit {in_channels}->{out_channels} at stride {stride}")
        self.stride = stride
        half = out_channels // 2
        self.branch1: nn.Sequential | None = None
        if stride == 2:
            self.branch1 = nn.Sequential(
                *_conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, relu=False),
                *_conv_bn(in_channels, half, 1),
            )
        branch2_in = in_channels if stride == 2 else half
        self.branch2 = nn.Sequential(
            *_conv_bn(branch2_in, half, 1),
            *_conv_bn(half, half, 3, stride, groups=half, relu=False),
            *_conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(processed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def _stage(in_channels: int, out_channels: int, units: int) -> nn.Sequential:
    """A unit of stride 2, then ``units - 1`` of stride 1."""
    return nn.Sequential(ShuffleUnit(in_channels, out_channels, 2),
                         *(ShuffleUnit(out_channels, out_channels, 1) for _ in range(units - 1)))


class ShuffleNetV2Cifar(nn.Module):
    """ShuffleNetV2 for 32x32 inputs; ``channels`` are the stem, stage and conv5 widths."""

    def __init__(self, num_classes: int = 10, channels: tuple[int, int, int, int, int] = X0_5_CHANNELS,
                 stage_units: tuple[int, int, int] = STAGE_UNITS) -> None:
        super().__init__()
        stem, *stage_channels, last = channels
        self.conv1 = nn.Sequential(*_conv_bn(3, stem, 3))
        inputs = (stem, *stage_channels[:-1])
        self.stage2, self.stage3, self.stage4 = (
            _stage(in_channels, out_channels, units)
            for in_channels, out_channels, units in zip(inputs, stage_channels, stage_units))
        self.conv5 = nn.Sequential(*_conv_bn(stage_channels[-1], last, 1))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.conv1(x))))
        return self.fc(self.conv5(x).mean((2, 3)))
