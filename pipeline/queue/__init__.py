"""Job queue between producers and consumers: Redis Streams (or in-process), claim-check artifacts.

See ``streams`` for a job's life and the recording rule, ``artifacts`` for the file hand-off,
``inprocess`` for the queue without a server and ``access`` for how a producer opens either.
The queue carries jobs and knows nothing of the work: what a consumer does with a job is the
caller's ``WorkFn``, and what a producer does with a result is the producer's (``pipeline.trial``).
"""

from .access import ResultQueue, open_queue
from .artifacts import ArtifactError, ArtifactStore
from .client import connect
from .config import QueueConfig, QueueKeys
from .inprocess import NO_WAIT_S, InProcessQueue
from .streams import ClaimedJob, JobQueue
from .worker import JobInterrupted, Worker, WorkFn, check_only, run_work

__all__ = [
    "ArtifactError", "ArtifactStore", "ClaimedJob", "InProcessQueue", "JobInterrupted", "JobQueue",
    "NO_WAIT_S", "QueueConfig", "QueueKeys", "ResultQueue", "WorkFn", "Worker", "check_only", "connect",
    "open_queue", "run_work",
]
