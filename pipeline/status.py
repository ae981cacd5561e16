"""Every status the pipeline records: of a job's measurement (``Result.status``) and of a run or
a sweep trial (``result.json`` and TrialRecords). One place, so no code compares bare strings."""

from __future__ import annotations

from enum import Enum


class _Status(str, Enum):
    """A status that is a ``str``: it compares to, and serialises (JSON, W&B) as, its value."""

    def __str__(self) -> str:
        return self.value


class JobStatus(_Status):
    """How a consumer's measurement of one job ended (``pipeline.messages.Result.status``).

    The values are the queue's wire format: a result stored by an older consumer still parses.
    """

    OK = "ok"
    FAILED = "failed"


class TrialStatus(_Status):
    """A run's or trial's status."""

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
    #: A run's ``result.json`` while its job is queued and its result has not come (a producer
    #: that timed out); a sweep records such a trial as failed, so no TrialRecord is pending.
    PENDING = "pending"
