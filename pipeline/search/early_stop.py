"""Stopping hopeless trials during retraining, judged on validation Top1 after each epoch.

Two rules, both comparing a trial's curve (its Top1 after each epoch so far) with the curves of
the study's other trials (running, finished or stopped):

- ``hyperband`` (W&B's ``early_terminate``) decides exactly as W&B's ``hyperband_stop_runs``
  (github.com/wandb/sweeps, ``src/sweeps/hyperband_stopping.py``) on the same histories. The bands
  are ``Hyperband.brackets`` (epochs, 1-based). A trial is judged at the last band it has reached:
  the Top1 of every curve that reached that band (this trial's included) is ranked best first, and
  the one at position ``int(n / eta)`` (0-based) is the threshold; the trial stops when its best
  Top1 so far (or, with ``strict: true``, its Top1 at the band) is below it. No minimum number of
  peers: W&B stops the worse of two runs.
- ``median``: from epoch ``warmup`` on, a trial below the median of the others at the same epoch
  stops (Optuna's and Vizier's median rule), given at least ``min_peers`` of them.

Accuracy is the judge whatever the sweep optimises, because latency does not change while the
weights retrain. Values that are not finite numbers are dropped from a curve first, as W&B drops
them from a run's history.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from .config import Hyperband


def finite_curve(curve: Sequence[float]) -> list[float]:
    """``curve`` without its non-finite values (W&B's ``metric_history(filter_invalid=True)``)."""
    return [float(v) for v in curve
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


class EarlyStopper:
    """Decides after each epoch whether a trial goes on; ``judge`` returns the reason to stop."""

    def __init__(self, rule: str, hyperband: Hyperband | None = None, warmup: int = 1,
                 min_peers: int = 2):
        if rule == "hyperband" and hyperband is None:
            raise ValueError("the hyperband rule needs the early_terminate settings")
        self.rule = rule
        self.hyperband = hyperband
        self.warmup = warmup
        #: Median rule: fewer peers than this at an epoch and nobody is stopped.
        self.min_peers = min_peers

    def judge(self, curve: Sequence[float], peers: Sequence[Sequence[float]]) -> str | None:
        """``curve``: this trial's val Top1 after epochs 1, 2, ... so far; ``peers``: the other
        trials' curves. None: go on; otherwise the reason to stop."""
        curve = finite_curve(curve)
        if not self.rule or not curve:
            return None
        curves = [finite_curve(p) for p in peers]
        if self.rule == "median":
            return self._median(curve, curves)
        return self._hyperband(curve, curves)

    def _median(self, curve: list[float], peers: list[list[float]]) -> str | None:
        epoch, top1 = len(curve), curve[-1]
        values = [p[epoch - 1] for p in peers if len(p) >= epoch]
        if epoch < self.warmup or len(values) < self.min_peers:
            return None
        median = statistics.median(values)
        if top1 < median:
            return (f"early stop (median rule): val Top1 {top1:.2f}% after epoch {epoch} is "
                    f"below the median {median:.2f}% of {len(values)} trials")
        return None

    def _hyperband(self, curve: list[float], peers: list[list[float]]) -> str | None:
        assert self.hyperband is not None
        bands = self.hyperband.brackets(len(curve))
        if not bands:
            return None
        band, eta = bands[-1], self.hyperband.eta
        ranked = sorted((c[band - 1] for c in [curve, *peers] if len(c) >= band), reverse=True)
        # W&B's order statistic, computed as it does: int((1 / eta) * n), not a quantile.
        threshold = ranked[int((1.0 / eta) * len(ranked))]
        if self.hyperband.strict:
            judged, what = curve[band - 1], f"val Top1 {curve[band - 1]:.2f}% at epoch {band}"
        else:
            judged, what = max(curve), f"best val Top1 {max(curve):.2f}% by epoch {len(curve)}"
        if judged < threshold:
            return (f"early stop (hyperband, eta={eta:g}): {what} is outside the top {1.0 / eta:.0%} "
                    f"of {len(ranked)} trials at epoch {band} (needs {threshold:.2f}%)")
        return None
