"""Stopping hopeless trials during retraining, judged on validation Top1 after each epoch.

Two rules, both comparing a trial with the other trials of the study at the same epoch:
``hyperband`` (W&B's ``early_terminate``): at the bracket epochs (``min_iter * eta^k``, or
``max_iter / eta^k`` for ``k = 1..s``, truncated as W&B does) a trial must be in the top ``1/eta``
of the trials that reached that epoch, judged as W&B judges: by its best Top1 so far, or with
``strict: true`` by its Top1 at that epoch; ``median``: from epoch ``warmup`` on, a trial below the median stops
(Optuna's and Vizier's median rule). Accuracy is the judge whatever the sweep optimises, because
latency does not change while the weights retrain.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from .config import Hyperband


class EarlyStopper:
    """Decides after each epoch whether a trial goes on; ``judge`` returns the reason to stop."""

    def __init__(self, rule: str, hyperband: Hyperband | None = None, warmup: int = 1,
                 min_peers: int | None = None):
        if rule == "hyperband" and hyperband is None:
            raise ValueError("the hyperband rule needs the early_terminate settings")
        self.rule = rule
        self.hyperband = hyperband
        self.warmup = warmup
        eta = hyperband.eta if hyperband else 2.0
        #: Fewer peers than this at an epoch and nobody is stopped: one rival is not a population.
        self.min_peers = min_peers if min_peers is not None else max(2, math.ceil(eta))

    def judge(self, epoch: int, top1: float, peers: list[float], best: float | None = None
              ) -> str | None:
        """``epoch``: epochs completed (1-based); ``peers``: other trials' Top1 at that epoch;
        ``best``: this trial's best Top1 so far (hyperband without ``strict``; default ``top1``)."""
        if not self.rule or len(peers) < self.min_peers:
            return None
        if self.rule == "median":
            if epoch < self.warmup:
                return None
            median = statistics.median(peers)
            if top1 < median:
                return (f"early stop (median rule): val Top1 {top1:.2f}% after epoch {epoch} is "
                        f"below the median {median:.2f}% of {len(peers)} trials")
            return None
        assert self.hyperband is not None
        if epoch not in self.hyperband.brackets(epoch):
            return None
        keep = 1.0 / self.hyperband.eta
        threshold = float(np.quantile(peers, 1.0 - keep))
        judged, what = (top1, f"val Top1 {top1:.2f}% after epoch {epoch}")
        if not self.hyperband.strict and best is not None and best > top1:
            judged, what = best, f"best val Top1 {best:.2f}% by epoch {epoch}"
        if judged < threshold:
            return (f"early stop (hyperband, eta={self.hyperband.eta:g}): {what} is outside the "
                    f"top {keep:.0%} of {len(peers)} trials (needs {threshold:.2f}%)")
        return None
