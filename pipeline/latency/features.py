"""What a latency model is linear in: per output resolution, a layer count, MACs and padding MACs.

OpenVINO's CPU plugin stores activations in channel blocks of the SIMD width (``nChw16c`` with
AVX-512, ``nChw8c`` with AVX2), so a convolution of 17 channels can cost what one of 32 does. But
not everywhere: measured on ResNet20 (AMD EPYC, AVX-512, 2026-12-01), stage 1 sped up step by step
from 16 to 14, 12, 10, 8 filters while stage 3 went in steps of 16. So the padding is a term of
its own, the MACs a convolution would add if its channels were rounded up to the block, which the
fit prices per resolution between 0 (no padding) and the price of a MAC (full padding). Per
resolution (32x32, 16x16, 8x8 on CIFAR) because a kernel's efficiency depends on the image size it
runs over; the count prices each layer's fixed overhead (and the ReLU/Add beside it).
Total = const + sum over groups of (a_group x layers + b_group x MMACs + p_group x padding MMACs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .shapes import LayerShape

#: SIMD blocks a model is fitted with; the one that predicts held-out architectures best is kept.
SIMD_BLOCKS = (1, 8, 16)
#: MACs are counted in millions, so that the coefficients read as ms per MMAC.
MACS_UNIT = 1e6
#: Features per group, in ``FeatureSpec.names`` order.
TERMS = ("count", "macs", "padding")


def cpu_simd_block(cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    """This machine's channel block for fp32: 16 with AVX-512, 8 with AVX2, else 1 (unknown)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return 1
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


def padded(channels: int, block: int) -> int:
    """``channels`` rounded up to a multiple of ``block``."""
    return math.ceil(channels / block) * block


def _mmacs(shape: LayerShape, in_ch: int, out_ch: int) -> float:
    """Millions of MACs of ``shape`` with ``in_ch`` input and ``out_ch`` output channels."""
    return (out_ch * (in_ch // shape.groups) * shape.kernel * shape.kernel
            * shape.out_h * shape.out_w) / MACS_UNIT


def group_of(shape: LayerShape) -> str:
    """The feature group of a layer: its kind and output resolution, e.g. ``conv@16x16``."""
    return f"{shape.kind}@{shape.out_h}x{shape.out_w}"


def groups_of(shapes: Sequence[LayerShape]) -> list[str]:
    """The groups of ``shapes`` in first-seen order."""
    return list(dict.fromkeys(group_of(s) for s in shapes))


@dataclass(frozen=True)
class FeatureSpec:
    """The feature definition: which groups, and the SIMD block channels are padded to."""

    groups: tuple[str, ...]
    simd_block: int

    @property
    def names(self) -> list[str]:
        return ["const"] + [f"{term}:{g}" for g in self.groups for term in TERMS]

    def vector(self, shapes: Sequence[LayerShape]) -> np.ndarray:
        """The features of one architecture (``names`` order); a layer of an unknown group raises
        KeyError naming it."""
        index = {g: i for i, g in enumerate(self.groups)}
        x = np.zeros(1 + len(TERMS) * len(self.groups))
        x[0] = 1.0
        b = self.simd_block
        for s in shapes:
            column = 1 + len(TERMS) * index[group_of(s)]
            macs = _mmacs(s, s.in_ch, s.out_ch)
            x[column] += 1.0
            x[column + 1] += macs
            x[column + 2] += _mmacs(s, padded(s.in_ch, b), padded(s.out_ch, b)) - macs
        return x

    def matrix(self, architectures: Sequence[Sequence[LayerShape]]) -> np.ndarray:
        return np.stack([self.vector(a) for a in architectures])
