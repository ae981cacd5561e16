"""``Relative_Latency``: a model's request time over a reference model's, timed in alternation.

A shared VM runs everything 1.3-2x slower for seconds to a minute at a time, and on some machines
(a 2-core Intel Xeon VM) neither the quiet median nor a numpy reference kernel sees it coming
(interference.py). Two OpenVINO models timed in short alternating windows do slow down together,
so their ratio holds still while each figure swings: over 60 s of pretrained ResNet56 against
ResNet32 on that VM, the spread (max - min over median) of 5-second estimates was 6% for the
ratio's median against 36% for the quietest window of the model alone.

The ratio is what a search ranks architectures by (each one against the same reference, the
unpruned base network: ``edgeprune sweep``'s jobs name it, ``pipeline.flow.consume`` times it);
``speedup = 1 / Relative_Latency``. It is dimensionless: absolute figures stay ``Total_Latency``
and ``Latency``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

#: Times one window of requests and returns their milliseconds.
WindowFn = Callable[[], np.ndarray]


@dataclass
class RelativeLatency:
    """The model's request time over the reference's, windows of both timed in alternation."""

    #: Median over polls of (model window median / reference window median).
    ratio: float
    #: Interquartile range of the per-poll ratios over ``ratio``: how still the ratio held.
    spread: float
    polls: int
    #: File name of the reference model.
    reference: str
    #: The reference's lowest window median seen (ms): ``ratio * reference_ms`` is a latency
    #: estimate in ms for the quiet machine.
    reference_ms: float

    def to_metrics(self) -> dict[str, float | int | str]:
        return {"Relative_Latency": round(self.ratio, 5),
                "relative_spread": round(self.spread, 4),
                "relative_polls": self.polls,
                "relative_reference": self.reference,
                "relative_reference_ms": round(self.reference_ms, 5)}


def relative_latency(model_window: WindowFn, reference_window: WindowFn, polls: int,
                     reference: str) -> RelativeLatency:
    """Alternate ``polls`` windows of the model and the reference; the median of their ratios.

    Each poll times the model, then the reference, back to back, so both see the same state of
    the machine; the order is swapped every other poll so that neither always runs second.
    """
    if polls < 1:
        raise ValueError(f"polls must be at least 1, got {polls}")
    ratios, reference_medians = [], []
    for poll in range(polls):
        if poll % 2 == 0:
            model_ms = float(np.median(model_window()))
            reference_ms = float(np.median(reference_window()))
        else:
            reference_ms = float(np.median(reference_window()))
            model_ms = float(np.median(model_window()))
        ratios.append(model_ms / reference_ms)
        reference_medians.append(reference_ms)
    ratio, spread = ratio_and_spread(ratios)
    return RelativeLatency(ratio=ratio, spread=spread, polls=polls,
                           reference=reference, reference_ms=min(reference_medians))


def ratio_and_spread(ratios: list[float]) -> tuple[float, float]:
    """The median of per-poll ratios, and their interquartile range over it."""
    ratio = float(np.median(ratios))
    q1, q3 = np.percentile(ratios, [25, 75])
    return ratio, float(q3 - q1) / ratio
