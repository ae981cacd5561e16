"""Job queue between producers and consumers: Redis Streams (or in-process), claim-check artifacts.

See ``streams`` for a job's life and the recording rule, ``artifacts`` for the file hand-off.
The queue carries jobs and knows nothing of the work: what a consumer does with a job is the
caller's ``WorkFn``, and what a producer does with a result is the producer's (``pipeline.trial``).
"""

from .artifacts import ArtifactError, ArtifactStore
from .client import connect
from .config import QueueConfig, QueueKeys
from .embedded import embedded_queue, open_queue
from .streams import ClaimedJob, JobQueue
from .worker import JobInterrupted, Worker, WorkFn, check_only

__all__ = [
    "ArtifactError", "ArtifactStore", "ClaimedJob", "JobInterrupted", "JobQueue", "QueueConfig",
    "QueueKeys", "WorkFn", "Worker", "check_only", "connect", "embedded_queue", "open_queue",
]
