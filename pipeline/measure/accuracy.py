"""Deployed accuracy: Top1/Top5 of logits that came out of the engine, computed batch by batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

#: Deployed and PyTorch Top1 may differ by this many points before a result is flagged.
ACCURACY_GAP_POINTS = 0.5


@dataclass
class DeployedAccuracy:
    top1: float  # percent
    top5: float  # percent
    count: int


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate_logits(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                    labels: np.ndarray, batch_size: int) -> DeployedAccuracy:
    """Top1/Top5 of ``predict`` (a fixed-batch engine call) over ``images``.

    The last partial batch is padded with zeros to ``batch_size`` and the padding's logits dropped,
    so the engine only ever sees one input shape.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    correct1 = correct5 = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        real = len(chunk)
        if real < batch_size:
            pad = np.zeros((batch_size - real, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        logits = np.asarray(predict(chunk))[:real]
        truth = labels[start:start + real]
        correct1 += topk_correct(logits, truth, 1)
        correct5 += topk_correct(logits, truth, 5)
    n = len(images)
    return DeployedAccuracy(100.0 * correct1 / n, 100.0 * correct5 / n, n)


def accuracy_gap(deployed_top1: float, torch_top1: float,
                 tolerance: float = ACCURACY_GAP_POINTS) -> str | None:
    """A one-line warning when deployed and PyTorch Top1 differ by more than ``tolerance`` points."""
    gap = deployed_top1 - torch_top1
    if abs(gap) <= tolerance:
        return None
    return (f"deployed Top1 {deployed_top1:.2f}% differs from PyTorch's {torch_top1:.2f}% by "
            f"{gap:+.2f} points (more than {tolerance}): check the precision and the export")
