"""The consumer loop: claim a job, fetch and check its model, run the work, report the outcome.

The consumer agent runs this loop; only the work function differs (the caller's measures the
model; ``check_only`` just checks the model file). The loop knows nothing of what the work does.
``run_work`` is how a work function's failures become a Result, here and in the in-process
queue (``inprocess``); ``run_limited`` adds the consumer's per-job time limit.
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
from .config import GROUP
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


#: Work threads left running past their time limit (see ``run_limited``).
_abandoned: list[threading.Thread] = []


def abandoned_work_running() -> bool:
    """Whether work abandoned at its time limit is still running in this process."""
    return any(thread.is_alive() for thread in _abandoned)


class JobTimeLimit(Exception):
    """The work of a job ran past the consumer's time limit; the message says so, with the fix."""


def run_limited(work: WorkFn, job: Job, onnx_path: Path, limit_s: float) -> Result:
    """``run_work`` given at most ``limit_s`` seconds (0: no limit); past it ``JobTimeLimit``.

    The work runs in a daemon thread, because a measurement blocked in native code (a model
    compiling or inferring for hours) cannot be interrupted: the thread is abandoned, its
    eventual result discarded, and it ends when its work returns or the consumer exits.
    """
    if limit_s <= 0:
        return run_work(work, job, onnx_path)
    outcome: list[Result] = []
    thread = threading.Thread(target=lambda: outcome.append(run_work(work, job, onnx_path)),
                              name=f"job-{job.job_id[:12]}", daemon=True)
    thread.start()
    thread.join(limit_s)
    if outcome:
        return outcome[0]
    _abandoned.append(thread)
    log.error("job %s: no outcome within the %g s time limit; its work is abandoned and goes on "
              "in the background until it returns (figures measured meanwhile may be slower)",
              job.job_id, limit_s)
    raise JobTimeLimit(f"the measurement took over the consumer's time limit of {limit_s:g} s: "
                       "the model is too slow for this device, or raise --job-timeout")


@dataclass
class WorkerStats:
    """What one worker did since it started."""

    done: int = 0
    failed: int = 0
    #: Jobs run to the end whose result another consumer had stored first.
    duplicates: int = 0
    released: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def finished(self) -> int:
        """Jobs this worker took to an outcome (what ``max_jobs`` counts)."""
        return self.done + self.failed + self.duplicates


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
                if max_jobs and self.stats.finished >= max_jobs:
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
                except redis.exceptions.ResponseError as exc:
                    # A queue key (the stream itself, the deliveries hash) of another type or a
                    # missing ACL permission: no entry to dead-letter; wait for the operator.
                    log.error("Redis refused the queue's commands (%s): retrying in %.0f s; check the "
                              "queue's keys and this consumer's ACL user", exc, backoff)
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
                try:
                    result = run_limited(self.work, job, onnx_path, self.queue.config.job_timeout_s)
                except JobTimeLimit as exc:
                    # The same model would overrun again: no retry.
                    self.queue.fail(claimed, str(exc), permanent=True)
                    self.stats.failed += 1
                    return True
            result.consumer = self.identity
            if self.queue.complete(claimed, result):
                self.stats.done += 1
            elif not result.ok:
                self.stats.failed += 1
            else:
                self.stats.duplicates += 1
            return True
        except redis.exceptions.ResponseError as exc:
            self._settle_refused(claimed, exc)
            return True
        except JobInterrupted:
            log.warning("stopping: job %s released back to the queue", job.job_id)
            self.queue.release(claimed)
            self.stats.released += 1
            return False
        finally:
            self.current = None

    def _settle_refused(self, claimed: ClaimedJob, exc: redis.exceptions.ResponseError) -> None:
        """Dead-letter a job whose keys Redis refused to handle (WRONGTYPE: a key of another
        type under the job's name): one dead letter, not a consumer crash per delivery."""
        job_id = claimed.job.job_id
        log.error("job %s: Redis refused an operation on its keys: %s", job_id, exc)
        self.stats.failed += 1
        try:
            self.queue.fail(claimed, f"Redis refused an operation on this job's keys ({str(exc)[:120]}): "
                                     "a key under its id holds another type; submit the job again",
                            permanent=True)
        except redis.exceptions.ResponseError as again:
            log.error("job %s could not be dead-lettered either (%s): acknowledging it", job_id, again)
            self.queue.client.xack(claimed.stream, GROUP, claimed.entry_id)

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
                if current is not None and not self.queue.touch(current) and self.current is current:
                    log.warning("job %s was taken over by another consumer; the first result "
                                "stored wins", current.job.job_id)
            except redis.exceptions.RedisError as exc:  # unreachable, or a key of another type
                log.warning("heartbeat failed: %s", exc)
            if stop.wait(self.heartbeat_s):
                return

