"""What became of a run or a sweep trial: the ``status`` of ``result.json`` and of TrialRecords."""

from __future__ import annotations

from enum import Enum


class TrialStatus(str, Enum):
    """A run's or trial's status; a ``str``, so it compares to and serialises as its value."""

    OK = "ok"
    COLLAPSED = "collapsed"
    GATED = "gated"
    EARLY_STOPPED = "early_stopped"
    FAILED = "failed"
    #: A rapid trial of a multi-fidelity sweep: pruned, adaptive-BN Top1 on a few hundred val
    #: images and predicted latency; not exported, not measured, not (yet) fine-tuned.
    RAPID = "rapid"
    #: A sweep trial a worker has started and not finished.
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value
