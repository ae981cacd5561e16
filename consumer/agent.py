"""The consumer agent: ``pipeline.queue.Worker`` plus signal handling for a clean stop.

First SIGTERM/SIGINT: finish the current job, then exit. A second one while a job runs: give the
job back to the queue unfinished (it does not count as an attempt), then exit. Either way the
exit is clean (status 0); a SIGKILLed consumer's job is taken over by another consumer once the
visibility timeout passes.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from pipeline.messages import Target
from pipeline.queue import JobInterrupted, JobQueue, Worker, WorkFn
from pipeline.queue.worker import WorkerStats

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_consumer(queue: JobQueue, target: Target, work: WorkFn, name: str | None = None,
                 max_jobs: int = 0, idle_exit: float = 0.0) -> WorkerStats:
    """Serve ``target``'s jobs with ``work`` until a signal, ``max_jobs`` jobs or ``idle_exit`` idle
    seconds; must run in the main thread (it installs signal handlers)."""
    worker = Worker(queue, target, work, name=name)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and worker.current is not None:
            raise JobInterrupted()
        log.warning("%s: finishing the current job, then exiting (signal again to release it)",
                    signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    try:
        return worker.run(stop, max_jobs=max_jobs, idle_exit=idle_exit)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
