"""The job queue on Redis Streams: submit, claim, complete or fail, wait for the result.

Life of a job (keys in ``config.QueueKeys``):

1. ``submit`` stores the model file (claim check), records what the job id stands for (a hash
   of the whole job), adds the job to its target's stream and rings the target's doorbell.
2. ``claim`` first takes over jobs whose consumer went quiet for longer than the visibility
   timeout (XAUTOCLAIM), else reads a new one (XREADGROUP). An entry whose job id was submitted
   with another identity is a hijack and is dead-lettered alone, touching nothing of the real
   job. Each delivery is counted per job; a job delivered more than ``max_attempts`` times is
   dead-lettered instead of run again.
3. ``complete`` stores the result under the job id with SET NX (a second valid result for the
   same job is ignored; anything else found there, forged or of another Redis type, is replaced),
   then XACKs, deletes the artifact and notifies the waiting producer. XACK comes only after the
   result is stored, so a consumer dying in between loses nothing.
4. ``fail`` records the error and re-queues the job, or dead-letters it after the last attempt.

A producer believes a stored result only once ``results.check_result`` accepts it (its job id,
run id, figures and, with a queue secret, its signature); until then it keeps waiting.

The recording rule: a Result with status ``ok`` exists only for a job whose measurement finished.
A job that did not finish gets, once dead-lettered, a Result with status ``failed``, an error and
no metrics, so its producer is told why; no figures are ever recorded for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from ..messages import Job, Result, Target, parse_checked
from ..status import JobStatus
from .artifacts import ArtifactStore
from .config import GROUP, QueueConfig, QueueKeys
from .entries import BadEntry, check_job_id, parse_entry, raw_payload
from .reconnect import RedisUnavailable, retry_within
from .results import BadResult, check_result
from .signing import signed_json
from .status import queue_status

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
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def identity(job: Job) -> str:
    """What a job id stands for: the whole job (run id, artifact sha256, target...), hashed.

    Hashed as a consumer parses it (pydantic turns an int mean into a float...), so the job a
    producer submits and the job a consumer reads have the same identity.
    """
    parsed = parse_checked(Job, job.to_json())
    return hashlib.sha256(json.dumps(parsed.to_dict(), sort_keys=True).encode()).hexdigest()


class JobQueue:
    """Jobs per target on Redis Streams, with results stored once per job id."""

    def __init__(self, client: redis.Redis, prefix: str = "edgeprune",
                 config: QueueConfig | None = None) -> None:
        self.client = client
        self.keys = QueueKeys(prefix)
        self.config = config or QueueConfig()
        self.artifacts = ArtifactStore(client, self.keys, self.config)
        self._groups: set[str] = set()
        #: Run id of each job submitted through this queue: its result must name it.
        self._submitted: dict[str, str] = {}

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
        pipe.set(self.keys.claim(job.job_id), identity(job), ex=self.config.result_ttl_s)
        pipe.xadd(stream, {"job": self._job_text(job)})
        pipe.sadd(self.keys.targets, job.target.name)
        pipe.hincrby(self.keys.stats, "submitted", 1)
        self._ring(pipe, job.target.name)
        pipe.execute()
        self._submitted[job.job_id] = job.run_id
        log.info("submitted job %s to %s (%d bytes)", job.job_id, stream, job.artifact.size)
        return job

    def result(self, job_id: str, run_id: str | None = None) -> Result | None:
        """The stored result of ``job_id`` (ok or failed), or None while there is none.

        A stored value that is not a valid result of this job (of run ``run_id``, or of the run
        this queue submitted it with; signed when the queue has a secret) raises ``BadResult``.
        """
        key = self.keys.result(check_job_id(job_id))
        try:
            raw = self.client.get(key)
        except redis.exceptions.ResponseError as exc:  # WRONGTYPE: not a string at all
            raise BadResult(f"the result key holds no result ({str(exc)[:80]})") from None
        if raw is None:
            return None
        return check_result(raw, job_id, run_id or self._submitted.get(job_id), self.config.secret)

    def wait_result(self, job_id: str, timeout: float) -> Result | None:
        """Block until ``job_id`` has a valid result, for at most ``timeout`` seconds.

        Returns None on timeout; the job stays queued and its result is still stored when it comes.
        A stored value that is not a valid result (``result``) is ignored with one warning per
        distinct value, and the wait goes on. While Redis is unreachable it keeps retrying until
        the timeout.
        """
        deadline = time.monotonic() + timeout
        warned: set[str] = set()

        def poll() -> Result | None:
            try:
                return self.result(job_id)
            except BadResult as exc:
                if str(exc) not in warned:
                    warned.add(str(exc))
                    log.warning("job %s: ignoring what is stored as its result: %s; still waiting "
                                "for a valid one", job_id, exc)
                return None

        def sleep() -> None:
            # The notification only wakes us; the stored result is the truth. Short slices keep a
            # lost notification from costing more than a few seconds.
            remaining = min(deadline - time.monotonic(), MAX_BLOCK_S)
            try:
                self.client.blpop([self.keys.done(job_id)], timeout=remaining)
            except redis.exceptions.ResponseError:  # WRONGTYPE: not the queue's list; poll slower
                time.sleep(remaining)

        what = f"waiting for the result of job {job_id}"
        try:
            while True:
                result = retry_within(max(0.0, deadline - time.monotonic()), what, poll)
                # Checked once more after the last slice, so a result stored then is not missed.
                if result is not None or time.monotonic() >= deadline:
                    return result
                retry_within(max(0.0, deadline - time.monotonic()), what, sleep)
        except RedisUnavailable as exc:
            log.warning("%s", exc)
            return None

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
        # redis-py types every field bytes | str | int; "consumer" is a name.
        owner: list[dict[str, Any]] = self.client.xpending_range(claimed.stream, GROUP, min=claimed.entry_id,
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
        stored = self._store_result(result, claimed.job)
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
        return queue_status(self.client, self.keys)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` dead-lettered jobs: job id, run id, target, attempts, error, time."""
        rows = []
        # redis-py's type is that of every stream reply (XCLAIM's (id, None) for a deleted entry
        # included); XREVRANGE's entries always have their fields.
        entries = cast("list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
                       self.client.xrevrange(self.keys.dead, count=limit))
        for entry_id, fields in entries:
            row: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
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
        # The RESP2 reply (the queue's clients' protocol): [[stream, [(id, fields)]]], None when empty.
        reply = cast("list[list[Any]] | None", self.client.xreadgroup(GROUP, consumer, {stream: ">"}, count=1))
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
        job_id = ""
        try:
            job = parse_entry(fields, target_name, self.config.secret)
            job_id = job.job_id
            self._check_identity(job)
            attempt = self.client.hincrby(self.keys.deliveries, job.job_id, 1)
        except (BadEntry, redis.exceptions.ResponseError) as exc:
            # A ResponseError here is a job key of the wrong Redis type (WRONGTYPE): the entry
            # cannot be run, and one dead letter settles it instead of a crash per delivery.
            self._dead_letter_entry(stream, entry_id, fields, str(exc), job_id)
            return None
        claimed = ClaimedJob(job=job, stream=stream, entry_id=entry_id, consumer=consumer,
                             attempt=attempt, reclaimed=reclaimed)
        if self._has_result(job):
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

    def _dead_letter_entry(self, stream: str, entry_id: str, fields: dict, error: str,
                           job_id: str = "") -> None:
        """Dead-letter one stream entry that must not run, with its raw payload (cut short), and
        acknowledge it: nothing else is read, written or deleted for it."""
        log.error("dead-lettering bad entry %s on %s: %s", entry_id, stream, error)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.keys.dead, {"job_id": job_id, "error": error, "attempts": 1,
                                   "at": time.time(), "stream": stream, "entry_id": entry_id,
                                   "raw": raw_payload(fields)},
                  maxlen=self.config.dead_letter_max, approximate=True)
        pipe.hincrby(self.keys.stats, "dead", 1)
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        self._execute_all(pipe, entry_id)

    def _execute_all(self, pipe: Any, what: str) -> None:
        """Run ``pipe``'s transaction; a command Redis refuses (WRONGTYPE: a queue key of another
        type, e.g. the stats hash replaced by a string) is logged and does not undo the others."""
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.exceptions.ResponseError):
                log.warning("%s: Redis refused part of settling it: %s", what, reply)

    def _check_identity(self, job: Job) -> None:
        """Record ``job``'s identity under its id on first sight, or ``BadEntry`` when the id was
        submitted with another one (a second entry reusing the id of a job in flight)."""
        key = self.keys.claim(job.job_id)
        mine = identity(job)
        if self.client.set(key, mine, nx=True, ex=self.config.result_ttl_s):
            return
        known = self.client.get(key)
        if known is not None and _text(known) != mine:
            raise BadEntry(f"job id {job.job_id} was submitted as another job (run id, artifact or "
                           "settings differ): this entry reuses the id of a job in flight and is "
                           "not run; the real job is left alone")

    def _job_text(self, job: Job) -> str:
        return signed_json(self.config.secret, "job", job.to_dict())

    def _valid_result(self, raw: bytes | str | None, job: Job) -> bool:
        if raw is None:
            return False
        try:
            check_result(raw, job.job_id, job.run_id, self.config.secret)
        except BadResult:
            return False
        return True

    def _has_result(self, job: Job) -> bool:
        """Whether a valid result of ``job`` is stored (a forged one, or one of another Redis
        type, does not count: the job still runs)."""
        try:
            raw = self.client.get(self.keys.result(job.job_id))
        except redis.exceptions.ResponseError:
            return False
        return self._valid_result(raw, job)

    def _store_result(self, result: Result, job: Job) -> bool:
        """Store ``result`` for ``job`` unless a valid one is there already; a stored value that
        is no valid result of this job (forged, or of another Redis type) is replaced."""
        key = self.keys.result(result.job_id)
        text = signed_json(self.config.secret, "result", result.to_dict())
        if self.client.set(key, text, nx=True, ex=self.config.result_ttl_s):
            return True
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                try:
                    valid = self._valid_result(pipe.get(key), job)
                except redis.exceptions.ResponseError:
                    valid = False
                if valid:
                    return False
                pipe.multi()
                pipe.delete(key)
                pipe.set(key, text, ex=self.config.result_ttl_s)
                pipe.execute()
            except redis.exceptions.WatchError:
                return False  # another consumer stored its result meanwhile: the first one wins
        log.warning("job %s: replaced a stored value that was not a valid result of it", result.job_id)
        return True

    def _finish(self, claimed: ClaimedJob, counter: str, extra: dict[FieldT, EncodableT] | None = None) -> None:
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
        # One command refused (a job key of the wrong type, e.g. WRONGTYPE on the done list) must
        # not undo the rest: the job is acknowledged either way.
        self._execute_all(pipe, f"job {job_id}")
        try:
            self.artifacts.delete(claimed.job.artifact, job_id)
        except OSError as exc:
            log.warning("could not delete the artifact of job %s: %s", job_id, exc)

    def _dead_letter(self, claimed: ClaimedJob, error: str) -> None:
        job = claimed.job
        failure = Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.FAILED,
                         error=f"dead-lettered after {claimed.attempt} attempt(s): {error}",
                         consumer=claimed.consumer, target=job.target, finished_at=time.time())
        if not self._store_result(failure, job):
            # A real result arrived first (a reclaimed duplicate finished): keep it.
            self._finish(claimed, "duplicates")
            return
        log.error("job %s dead-lettered: %s", job.job_id, error)
        entry: dict[FieldT, EncodableT] = {
            "job_id": job.job_id, "run_id": job.run_id, "target": job.target.name, "attempts": claimed.attempt,
            "error": error, "consumer": claimed.consumer, "at": time.time(), "job": job.to_json()}
        self._finish(claimed, "dead", extra=entry)

    def _requeue(self, claimed: ClaimedJob, counter: str) -> None:
        # A fresh entry instead of leaving it pending: it is retried now, not after the timeout.
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(claimed.stream, {"job": self._job_text(claimed.job)})
        pipe.xack(claimed.stream, GROUP, claimed.entry_id)
        pipe.xdel(claimed.stream, claimed.entry_id)
        pipe.hincrby(self.keys.stats, counter, 1)
        self._ring(pipe, claimed.job.target.name)
        pipe.execute()
