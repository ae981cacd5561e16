"""Job queue between producers and consumers: Redis Streams (or in-process), claim-check artifacts.

See ``streams`` for a job's life and the recording rule, ``artifacts`` for the file hand-off.
"""

from .artifacts import ArtifactError, ArtifactStore
from .client import connect
from .config import QueueConfig, QueueKeys
from .embedded import embedded_queue, open_queue
from .streams import ClaimedJob, JobQueue
from .trial import NullTracker, Tracker, TrialOutcome, run_trial
from .worker import JobInterrupted, Worker, WorkFn, check_only, measure_work

__all__ = [
    "ArtifactError", "ArtifactStore", "ClaimedJob", "JobInterrupted", "JobQueue", "NullTracker",
    "QueueConfig", "QueueKeys", "Tracker", "TrialOutcome", "WorkFn", "Worker", "check_only",
    "connect", "embedded_queue", "measure_work", "open_queue", "run_trial",
]
