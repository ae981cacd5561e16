"""The automated gradual pruning (AGP) sparsity ramp of Zhu & Gupta (2017).

``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3`` for the pruning steps
``t = t0, t0 + dt, ..., t0 + n * dt``: it prunes fast while many redundant weights remain and slows
down as the network approaches the final sparsity.

Epoch conventions follow Distiller's policies: the pruner fires at ``starting_epoch``,
``starting_epoch + frequency``, ... while the epoch is before ``ending_epoch``; the last firing epoch
``t0 + n * dt`` (``n * dt = ((ending - starting - 1) // frequency) * frequency``) reaches
``final_sparsity``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AGPRamp:
    """Sparsity targets of one AGP policy over its epochs."""

    initial_sparsity: float
    final_sparsity: float
    starting_epoch: int
    ending_epoch: int
    frequency: int = 1

    @property
    def span(self) -> int:
        """``n * dt``: epochs from the first to the last pruning step."""
        return ((self.ending_epoch - self.starting_epoch - 1) // self.frequency) * self.frequency

    @property
    def last_epoch(self) -> int:
        """The epoch of the last pruning step, where the target reaches ``final_sparsity``."""
        return self.starting_epoch + self.span

    def steps(self) -> list[int]:
        """Every epoch at which the ramp prunes."""
        return list(range(self.starting_epoch, self.last_epoch + 1, self.frequency))

    def target(self, epoch: int) -> float:
        """Target sparsity at ``epoch`` (clamped to the ramp's ends outside it)."""
        progress = min(max(epoch - self.starting_epoch, 0) / self.span, 1.0)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** 3

