"""The job queue on Redis Streams: submit, claim, complete or fail, wait for the result.

Life of a job (keys in ``config.QueueKeys``):

1. ``submit`` stores the model file (claim check), adds the job to its target's stream and rings
   the target's doorbell.
2. ``claim`` first takes over jobs whose consumer went quiet for longer than the visibility
   timeout (XAUTOCLAIM), else reads a new one (XREADGROUP). Each delivery is counted per job; a
   job delivered more than ``max_attempts`` times is dead-lettered instead of run again.
3. ``complete`` stores the result under the job id with SET NX (a second result for the same job
   is ignored), then XACKs, deletes the artifact and notifies the waiting producer. XACK comes
   only after the result is stored, so a consumer dying in between loses nothing.
4. ``fail`` records the error and re-queues the job, or dead-letters it after the last attempt.

The recording rule: a Result with status ``ok`` exists only for a job whose measurement finished.
A job that did not finish gets, once dead-lettered, a Result with status ``failed``, an error and
no metrics, so its producer is told why; no figures are ever recorded for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ..errors import QueueError
from ..messages import Job, Result, Target, parse_checked
from ..status import JobStatus
from .artifacts import ArtifactStore
from .config import GROUP, QueueConfig, QueueKeys
from .entries import BadEntry, check_job_id, parse_entry, raw_payload
from .reconnect import RedisUnavailable, retry_within

log = logging.getLogger(__name__)

#: Longest single blocking call (well under the client's socket timeout); longer waits loop.
MAX_BLOCK_S = 5.0


@dataclass
class ClaimedJob:
    """A job a consumer holds until it completes, fails or releases it."""

    job: Job
    stream: str
    entry_id: str
    consumer: str
    #: This delivery's number (1 for the first).
    attempt: int
    #: True when the job was taken over from a consumer that went quiet.
    reclaimed: bool = False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobQueue:
    """Jobs per target on Redis Streams, with results stored once per job id."""

    def __init__(self, client: redis.Redis, prefix: str = "edgeprune",
                 config: QueueConfig | None = None) -> None:
        self.client = client
        self.keys = QueueKeys(prefix)
        self.config = config or QueueConfig()
        self.artifacts = ArtifactStore(client, self.keys, self.config)
        self._groups: set[str] = set()

    # -- producer side -------------------------------------------------------------------------

    def submit(self, job: Job, onnx_path: Path, retry_s: float = 0.0) -> Job:
        """Store ``onnx_path`` as ``job``'s artifact and queue the job; returns it with the artifact set.

        While Redis is unreachable it retries for up to ``retry_s`` seconds, then raises
        ``RedisUnavailable``.
        """
        check_job_id(job.job_id)
        return retry_within(retry_s, f"submitting job {job.job_id}", lambda: self._submit(job, onnx_path))

    def _submit(self, job: Job, onnx_path: Path) -> Job:
        job.artifact = self.artifacts.put(job.job_id, onnx_path)
        stream = self.keys.jobs(job.target.name)
        self._ensure_group(stream)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(stream, {"job": job.to_json()})
        pipe.sadd(self.keys.targets, job.target.name)
        pipe.hincrby(self.keys.stats, "submitted", 1)
        self._ring(pipe, job.target.name)
        pipe.execute()
        log.info("submitted job %s to %s (%d bytes)", job.job_id, stream, job.artifact.size)
        return job

    def result(self, job_id: str) -> Result | None:
        """The stored result of ``job_id`` (ok or failed), or None while there is none."""
        raw = self.client.get(self.keys.result(check_job_id(job_id)))
        if raw is None:
            return None
        try:
            return parse_checked(Result, raw)
        except ValueError:
            raise QueueError(f"the stored result of job {job_id} is not a valid result message: "
                             f"inspect {self.keys.result(job_id)} on the queue's Redis") from None

    def wait_result(self, job_id: str, timeout: float) -> Result | None:
        """Block until ``job_id`` has a result, for at most ``timeout`` seconds.

        Returns None on timeout; the job stays queued and its result is still stored when it comes.
        While Redis is unreachable it keeps retrying until the timeout.
        """
        deadline = time.monotonic() + timeout

        def poll() -> Result | None:
            result = self.result(job_id)
            remaining = deadline - time.monotonic()
            if result is None and remaining > 0:
                # The notification only wakes us; the stored result is the truth. Short slices keep a
                # lost notification from costing more than a few seconds.
                self.client.blpop([self.keys.done(job_id)], timeout=min(remaining, MAX_BLOCK_S))
            return result

        while True:
            try:
                result = retry_within(max(0.0, deadline - time.monotonic()),
                                      f"waiting for the result of job {job_id}", poll)
            except RedisUnavailable as exc:
                log.warning("%s", exc)
                return None
            if result is not None or time.monotonic() >= deadline:
                return result

    # -- consumer side -------------------------------------------------------------------------

    def claim(self, target: Target, consumer: str, block_s: float = 2.0) -> ClaimedJob | None:
        """The next job for ``target``, waiting up to ``block_s`` seconds for one to arrive."""
        stream = self.keys.jobs(target.name)
        self._ensure_group(stream)
        waited = False
        while True:
            entry, reclaimed = self._reclaim(stream, consumer), True
            if entry is None:
                entry, reclaimed = self._read_new(stream, consumer), False
            if entry is None:
                if waited or block_s <= 0:
                    return None
                # Wait on the doorbell, which submit and a requeue ring, then look again.
                self.client.blpop([self.keys.doorbell(target.name)], timeout=min(block_s, MAX_BLOCK_S))
                waited = True
                continue
            claimed = self._admit(stream, target.name, entry, consumer, reclaimed)
            if claimed is not None:
                return claimed

    def touch(self, claimed: ClaimedJob) -> bool:
        """Reset the job's idle time so it is not reclaimed; False if another consumer took it."""
        owner = self.client.xpending_range(claimed.stream, GROUP, min=claimed.entry_id,
                                           max=claimed.entry_id, count=1)
        if not owner or _text(owner[0]["consumer"]) != claimed.consumer:
            return False
        self.client.xclaim(claimed.stream, GROUP, claimed.consumer, 0, [claimed.entry_id], justid=True)
        return True

    def fetch_artifact(self, claimed: ClaimedJob, scratch_dir: Path) -> Path:
        """The job's model file, checked for size and sha256 (``ArtifactError`` if it is not)."""
        return self.artifacts.fetch(claimed.job.artifact, claimed.job.job_id, scratch_dir)

    def complete(self, claimed: ClaimedJob, result: Result) -> bool:
        """Store ``result`` for the job (once), acknowledge it and wake the producer.

        A failed ``result`` is handed to ``fail``. Returns False when the job already had a
        result (the new one is ignored) or failed.
        """
        if not result.ok:
            self.fail(claimed, result.error or "the consumer reported a failure without a reason")
            return False
        if not result.consumer:
            result.consumer = claimed.consumer
        stored = self._store_result(result)
        self._finish(claimed, "ok" if stored else "duplicates")
        if not stored:
            log.warning("job %s already had a result: this one from %s is ignored",
                        claimed.job.job_id, claimed.consumer)
        return stored

    def fail(self, claimed: ClaimedJob, error: str, permanent: bool = False) -> None:
        """Record a failed attempt: re-queue the job, or dead-letter it after the last attempt.

        ``permanent`` failures (a tampered or missing artifact) are dead-lettered at once.
        """
        job_id = claimed.job.job_id
        self.client.hset(self.keys.errors, job_id, error)
        if permanent or claimed.attempt >= self.config.max_attempts:
            self._dead_letter(claimed, error)
            return
        log.warning("job %s failed attempt %d/%d: %s", job_id, claimed.attempt,
                    self.config.max_attempts, error)
        self._requeue(claimed, "requeued")

    def release(self, claimed: ClaimedJob) -> None:
        """Give the job back unfinished (the consumer is stopping); it does not count as an attempt."""
        self.client.hincrby(self.keys.deliveries, claimed.job.job_id, -1)
        self._requeue(claimed, "released")

    # -- inspection ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts for ``edgeprune queue status``: per target waiting and in-flight jobs, dead
        letters, stored results, live consumers and lifetime counters."""
        from .status import queue_status

        return queue_status(self)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` dead-lettered jobs: job id, run id, target, attempts, error, time."""
        rows = []
        for entry_id, fields in self.client.xrevrange(self.keys.dead, count=limit):
            row = {_text(k): _text(v) for k, v in fields.items()}
            row["entry_id"] = _text(entry_id)
            row["attempts"] = int(row.get("attempts", 0))
            row["at"] = float(row.get("at", 0))
            row.pop("job", None)
            rows.append(row)
        return rows

    # -- internals -----------------------------------------------------------------------------

    def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            # id=0: jobs submitted before the first consumer existed are delivered too.
            self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    def _ring(self, pipe: Any, target_name: str) -> None:
        bell = self.keys.doorbell(target_name)
        pipe.lpush(bell, 1)
        # Rings pile up while no consumer listens; a few are enough to wake every waiter.
        pipe.ltrim(bell, 0, 63)
        pipe.expire(bell, 3600)

    def _reclaim(self, stream: str, consumer: str) -> tuple[bytes, dict] | None:
        idle_ms = int(self.config.visibility_timeout_s * 1000)
        reply = self.client.xautoclaim(stream, GROUP, consumer, min_idle_time=idle_ms,
                                       start_id="0-0", count=1)
        entries = [e for e in reply[1] if e and e[1]]
        if not entries:
            return None
        log.warning("reclaimed entry %s on %s: its consumer was quiet for over %.0f s",
                    _text(entries[0][0]), stream, self.config.visibility_timeout_s)
        self.client.hincrby(self.keys.stats, "reclaimed", 1)
        return entries[0]

    def _read_new(self, stream: str, consumer: str) -> tuple[bytes, dict] | None:
        reply = self.client.xreadgroup(GROUP, consumer, {stream: ">"}, count=1)
        for _, entries in reply or ():
            for entry in entries:
                return entry
        return None

    def _admit(self, stream: str, target_name: str, entry: tuple[bytes, dict], consumer: str,
               reclaimed: bool) -> ClaimedJob | None:
        """Turn a stream entry into a ClaimedJob, or settle it at once (None) when it must not run.

        An entry that is not a valid job is dead-lettered with its raw payload (cut short) and
        acknowledged: nothing else is read, written or deleted for it.
        """
        entry_id, fields = _text(entry[0]), entry[1]
        try:
            job = parse_entry(fields, target_name)
        except BadEntry as exc:
            log.error("dead-lettering bad entry %s on %s: %s", entry_id, stream, exc)
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(self.keys.dead, {"job_id": "", "error": str(exc), "attempts": 1,
                                       "at": time.time(), "stream": stream, "entry_id": entry_id,
                                       "raw": raw_payload(fields)},
                      maxlen=self.config.dead_letter_max, approximate=True)
            pipe.hincrby(self.keys.stats, "dead", 1)
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()
            return None
        attempt = self.client.hincrby(self.keys.deliveries, job.job_id, 1)
        claimed = ClaimedJob(job=job, stream=stream, entry_id=entry_id, consumer=consumer,
                             attempt=attempt, reclaimed=reclaimed)
        if self.client.exists(self.keys.result(job.job_id)):
            # The last consumer stored the result but died before acknowledging it.
            self._finish(claimed, "duplicates")
            return None
        if attempt > self.config.max_attempts:
            last = self.client.hget(self.keys.errors, job.job_id)
            reason = _text(last) if last else (
                f"no result after {attempt - 1} deliveries: the consumer died or exceeded the "
                f"{self.config.visibility_timeout_s:.0f} s visibility timeout each time")
            claimed.attempt -= 1
            self._dead_letter(claimed, reason)
            return None
        return claimed

    def _store_result(self, result: Result) -> bool:
        key = self.keys.result(result.job_id)
        return bool(self.client.set(key, result.to_json(), nx=True, ex=self.config.result_ttl_s))

    def _finish(self, claimed: ClaimedJob, counter: str, extra: dict[str, Any] | None = None) -> None:
        """Acknowledge and forget the job, delete its artifact, wake its producer."""
        job_id = claimed.job.job_id
        pipe = self.client.pipeline(transaction=True)
        if extra:
            pipe.xadd(self.keys.dead, extra, maxlen=self.config.dead_letter_max, approximate=True)
        pipe.hincrby(self.keys.stats, counter, 1)
        pipe.xack(claimed.stream, GROUP, claimed.entry_id)
        pipe.xdel(claimed.stream, claimed.entry_id)
        pipe.hdel(self.keys.deliveries, job_id)
        pipe.hdel(self.keys.errors, job_id)
        done = self.keys.done(job_id)
        pipe.lpush(done, 1)
        pipe.expire(done, self.config.result_ttl_s)
        pipe.execute()
        try:
            self.artifacts.delete(claimed.job.artifact, job_id)
        except OSError as exc:
            log.warning("could not delete the artifact of job %s: %s", job_id, exc)

    def _dead_letter(self, claimed: ClaimedJob, error: str) -> None:
        job = claimed.job
        failure = Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.FAILED,
                         error=f"dead-lettered after {claimed.attempt} attempt(s): {error}",
                         consumer=claimed.consumer, target=job.target, finished_at=time.time())
        if not self._store_result(failure):
            # A real result arrived first (a reclaimed duplicate finished): keep it.
            self._finish(claimed, "duplicates")
            return
        log.error("job %s dead-lettered: %s", job.job_id, error)
        entry = {"job_id": job.job_id, "run_id": job.run_id, "target": job.target.name,
                 "attempts": claimed.attempt, "error": error, "consumer": claimed.consumer,
                 "at": time.time(), "job": job.to_json()}
        self._finish(claimed, "dead", extra=entry)

    def _requeue(self, claimed: ClaimedJob, counter: str) -> None:
        # A fresh entry instead of leaving it pending: it is retried now, not after the timeout.
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(claimed.stream, {"job": claimed.job.to_json()})
        pipe.xack(claimed.stream, GROUP, claimed.entry_id)
        pipe.xdel(claimed.stream, claimed.entry_id)
        pipe.hincrby(self.keys.stats, counter, 1)
        self._ring(pipe, claimed.job.target.name)
        pipe.execute()
