"""The queue without a server: producer and consumer in one process over an in-process fakeredis.

``edgeprune run`` and local sweeps use this (``open_queue`` picks it when no Redis URL is given);
the code path is the same ``JobQueue`` and ``Worker`` as with a real Redis, only the client differs.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from ..messages import Target
from .client import connect
from .config import QueueConfig
from .streams import JobQueue
from .worker import WorkFn, Worker

log = logging.getLogger(__name__)

#: Seconds the consumer thread blocks per wait: also how long closing the queue may take.
_BLOCK_S = 0.5


@contextmanager
def embedded_queue(work: WorkFn, target: Target | None = None, config: QueueConfig | None = None,
                   prefix: str = "edgeprune") -> Iterator[JobQueue]:
    """Yield a JobQueue served by a consumer thread running ``work`` on ``target``'s jobs.

    The thread and the in-memory store end with the block; jobs still queued then are dropped.
    """
    import fakeredis

    server = fakeredis.FakeServer()
    target = target or Target()
    worker = Worker(JobQueue(connect(None, fake_server=server), prefix, config), target, work,
                    name="embedded")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_s": _BLOCK_S},
                              name="embedded-consumer", daemon=True)
    thread.start()
    try:
        yield JobQueue(connect(None, fake_server=server), prefix, config)
    finally:
        stop.set()
        thread.join()


@contextmanager
def open_queue(redis_url: str | None, work: WorkFn, target: Target | None = None,
               config: QueueConfig | None = None, prefix: str = "edgeprune") -> Iterator[JobQueue]:
    """The queue on the Redis at ``redis_url`` (consumers run elsewhere), or with ``redis_url``
    None an embedded one whose consumer thread runs ``work`` on ``target``'s jobs."""
    if redis_url:
        yield JobQueue(connect(redis_url), prefix, config)
        return
    with embedded_queue(work, target, config, prefix) as queue:
        yield queue
