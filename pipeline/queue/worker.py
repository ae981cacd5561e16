"""The consumer loop: claim a job, fetch and check its model, run the work, report the outcome.

The consumer agent runs this loop; only the work function differs (the caller's measures the
model; ``check_only`` just checks the model file). The loop knows nothing of what the work does.
``run_work`` is how a work function's failures become a Result, here and in the in-process
queue (``inprocess``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import redis

from ..errors import UserError
from ..messages import Job, Result, Target
from ..status import JobStatus
from .artifacts import ArtifactError
from .streams import ClaimedJob, JobQueue

log = logging.getLogger(__name__)

#: What a consumer does with a job: measure the model file and say how it went.
WorkFn = Callable[[Job, Path], Result]

#: Longest pause between retries while Redis is unreachable.
MAX_BACKOFF_S = 30.0


class JobInterrupted(BaseException):
    """Raised inside the work when the consumer must stop now: the job is released, not failed."""


def check_only(job: Job, onnx_path: Path) -> Result:
    """Light work for testing the plumbing: check that the file is a valid ONNX model.

    Reports the file size and node count, never latency or accuracy; an invalid file fails.
    """
    import onnx

    started = time.time()
    try:
        model = onnx.load(str(onnx_path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ... for a bad file
        return Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.FAILED, target=job.target,
                      error=f"not a valid ONNX model: {type(exc).__name__}: {exc}",
                      started_at=started, finished_at=time.time())
    return Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.OK, target=job.target,
                  metrics={"onnx_bytes": onnx_path.stat().st_size, "onnx_nodes": len(model.graph.node)},
                  started_at=started, finished_at=time.time())


def run_work(work: WorkFn, job: Job, onnx_path: Path) -> Result:
    """``work(job, onnx_path)`` with its start and end times filled in, or a failed Result.

    A ``UserError`` fails the job with its message; any other exception is logged with its
    traceback and fails the job as ``"Type: message"`` (a bad job must not take the consumer down
    with it). ``JobInterrupted`` and ``KeyboardInterrupt`` are not failures of the job: they go on.
    """
    started = time.time()
    try:
        result = work(job, onnx_path)
    except UserError as exc:
        error = str(exc)
    except Exception as exc:
        log.exception("job %s: the work raised", job.job_id)
        error = f"{type(exc).__name__}: {exc}"
    else:
        result.started_at = result.started_at or started
        result.finished_at = result.finished_at or time.time()
        return result
    return Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.FAILED, error=error,
                  target=job.target, started_at=started, finished_at=time.time())


@dataclass
class WorkerStats:
    """What one worker did since it started."""

    done: int = 0
    failed: int = 0
    released: int = 0
    started_at: float = field(default_factory=time.time)


def default_name() -> str:
    """A consumer name unique on this host: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Runs ``work`` on one target's jobs from ``queue`` until told to stop."""

    def __init__(self, queue: JobQueue, target: Target, work: WorkFn, name: str | None = None,
                 heartbeat_s: float = 5.0) -> None:
        self.queue = queue
        self.target = target
        self.work = work
        self.name = name or default_name()
        self.identity = f"{socket.gethostname()}:{self.name}"
        self.heartbeat_s = min(heartbeat_s, queue.config.visibility_timeout_s / 3)
        self.stats = WorkerStats()
        self.current: ClaimedJob | None = None

    def run(self, stop: threading.Event, max_jobs: int = 0, idle_exit: float = 0.0,
            block_s: float = 2.0) -> WorkerStats:
        """Take jobs until ``stop`` is set, ``max_jobs`` are handled, or none came for ``idle_exit`` s."""
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(beat_stop,), name=f"heartbeat-{self.name}",
                                daemon=True)
        beat.start()
        last_job = time.monotonic()
        backoff = 1.0
        log.info("consumer %s serving %s", self.name, self.queue.keys.jobs(self.target.name))
        try:
            while not stop.is_set():
                if max_jobs and self.stats.done + self.stats.failed >= max_jobs:
                    break
                if idle_exit and time.monotonic() - last_job > idle_exit:
                    log.info("consumer %s idle for %.0f s: exiting", self.name, idle_exit)
                    break
                try:
                    claimed = self.queue.claim(self.target, self.name, block_s=block_s)
                    if claimed is not None and not self.process(claimed):
                        break
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    # A job cut off mid-way stays pending and is reclaimed after the timeout.
                    log.warning("Redis unreachable (%s): retrying in %.0f s", exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                backoff = 1.0
                if claimed is not None:
                    last_job = time.monotonic()
        finally:
            beat_stop.set()
            beat.join()
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Gone at once from `queue status` rather than when the heartbeat expires.
                self.queue.client.delete(self.queue.keys.consumer(self.name))
        return self.stats

    def process(self, claimed: ClaimedJob) -> bool:
        """Run one claimed job to an outcome; False when the job was released to stop now."""
        job = claimed.job
        self.current = claimed
        log.info("job %s (run %s, attempt %d%s)", job.job_id, job.run_id, claimed.attempt,
                 ", reclaimed" if claimed.reclaimed else "")
        try:
            with tempfile.TemporaryDirectory(prefix="edgeprune-job-") as scratch:
                try:
                    onnx_path = self.queue.fetch_artifact(claimed, Path(scratch))
                except ArtifactError as exc:
                    self.queue.fail(claimed, str(exc), permanent=True)
                    self.stats.failed += 1
                    return True
                result = run_work(self.work, job, onnx_path)
            result.consumer = self.identity
            if self.queue.complete(claimed, result):
                self.stats.done += 1
            elif not result.ok:
                self.stats.failed += 1
            return True
        except JobInterrupted:
            log.warning("stopping: job %s released back to the queue", job.job_id)
            self.queue.release(claimed)
            self.stats.released += 1
            return False
        finally:
            self.current = None

    def heartbeat(self) -> dict:
        """The record other tools see for this consumer while it lives."""
        current = self.current
        return {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                "target": self.target.name, "current_job": current.job.job_id if current else "",
                "done": self.stats.done, "failed": self.stats.failed,
                "started_at": self.stats.started_at, "beat_at": time.time()}

    def _beat(self, stop: threading.Event) -> None:
        """Refresh the heartbeat key and keep the current job from being reclaimed."""
        key = self.queue.keys.consumer(self.name)
        ttl = max(1, int(round(self.heartbeat_s * 3)))
        while True:
            try:
                self.queue.client.set(key, json.dumps(self.heartbeat()), ex=ttl)
                current = self.current
                lost = current is not None and not self.queue.touch(current)
                if lost and self.current is current:
                    log.warning("job %s was taken over by another consumer; the first result "
                                "stored wins", current.job.job_id)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("heartbeat failed: %s", exc)
            if stop.wait(self.heartbeat_s):
                return

