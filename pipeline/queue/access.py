"""How a producer reaches a queue: ``open_queue``, and ``ResultQueue``, all it may call on one.

With a Redis URL the queue is ``JobQueue`` (consumers run elsewhere); without, it is the
``InProcessQueue``, which runs the work inside ``submit``. Producer-side code (``pipeline.trial``,
the latency gate, the sweep) is typed against ``ResultQueue``, so it cannot tell them apart.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from ..messages import Job, Result, Target
from .client import connect
from .config import QueueConfig
from .inprocess import InProcessQueue
from .signing import load_secret
from .streams import JobQueue
from .worker import WorkFn


class ResultQueue(Protocol):
    """The producer's side of a queue: submit a job with its model file, then wait for its Result."""

    def submit(self, job: Job, onnx_path: Path, retry_s: float = 0.0) -> Job: ...

    def wait_result(self, job_id: str, timeout: float) -> Result | None: ...


@contextmanager
def open_queue(redis_url: str | None, work: WorkFn, target: Target | None = None,
               config: QueueConfig | None = None, prefix: str = "edgeprune") -> Iterator[ResultQueue]:
    """The queue on the Redis at ``redis_url``, or with ``redis_url`` None an ``InProcessQueue``
    running ``work`` on ``target``'s jobs at submission (``prefix`` and all of ``config`` but its
    artifact size limit apply to Redis only). Without a secret in ``config``, the queue signs
    with the one in the environment (``signing.load_secret``), if any."""
    if redis_url:
        config = config or QueueConfig()
        if config.secret is None:
            config = dataclasses.replace(config, secret=load_secret())
        yield JobQueue(connect(redis_url), prefix, config)
    else:
        yield InProcessQueue(work, target, config)
