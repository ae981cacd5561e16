"""Tunables of the job queue, and the names of its Redis keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import QueueError

#: Name of the consumer group on every job stream.
GROUP = "consumers"
#: Key prefixes: no glob characters (``*?[]``) nor ``:``, so a prefix names only its own keys.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_prefix(prefix: object) -> str:
    """``prefix`` if it matches ``PREFIX_PATTERN``, else a one-line ``QueueError``."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.fullmatch(prefix):
        raise QueueError(f"queue prefix {str(prefix)[:80]!r} is not 1-64 letters, digits, '.', '_' "
                         "or '-' starting with a letter or digit: pass e.g. --prefix edgeprune")
    return prefix


def glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis SCAN/KEYS pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@dataclass(frozen=True)
class QueueConfig:
    """How long things may take and how big they may be.

    The defaults suit a measurement that takes seconds to minutes; tests shorten the timeouts.
    """

    #: A job claimed but not touched for this long is handed to another consumer. A live
    #: consumer touches its job every third of this, so only a dead or hung one loses it.
    visibility_timeout_s: float = 60.0
    #: Deliveries (claims, including reclaims after a consumer died) before a job is dead-lettered.
    max_attempts: int = 3
    #: Where artifacts go: ``redis`` (a key with a TTL on the queue's Redis) or ``file:///dir``
    #: (a directory every producer and consumer sees at the same path).
    artifact_store: str = "redis"
    #: Largest model file the queue accepts, in bytes.
    max_artifact_bytes: int = 64 * 1024 * 1024
    #: An artifact whose job is not done within this time expires (Redis store only).
    artifact_ttl_s: int = 3 * 24 * 3600
    #: Results (and failure records) are kept this long for producers that come back late.
    result_ttl_s: int = 7 * 24 * 3600
    #: Dead-letter entries kept (older ones are trimmed).
    dead_letter_max: int = 10_000
    #: Seconds a consumer gives one job's work; past it the job fails with that reason and the
    #: consumer takes the next (0: no limit). Well above a full measurement of a large model.
    job_timeout_s: float = 1800.0
    #: Shared secret that signs every job and result (``signing``); None: messages are unsigned.
    #: Kept out of repr so that no log line or traceback shows it.
    secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class QueueKeys:
    """Every Redis key of one queue, under one prefix (so tests and deployments stay apart)."""

    prefix: str = "edgeprune"

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def match(self, kind: str) -> str:
        """SCAN pattern of every key of one kind (``result``, ``artifact``, ``consumer``...)."""
        return f"{glob_escape(self.prefix)}:{glob_escape(kind)}:*"

    def jobs(self, target_name: str) -> str:
        """Stream of jobs for one target, e.g. ``edgeprune:jobs:openvino-CPU``."""
        return f"{self.prefix}:jobs:{target_name}"

    def doorbell(self, target_name: str) -> str:
        """List a consumer blocks on while its stream is empty; ``submit`` rings it."""
        return f"{self.prefix}:bell:{target_name}"

    @property
    def targets(self) -> str:
        """Set of target names that ever had a job (for ``status``)."""
        return f"{self.prefix}:targets"

    @property
    def dead(self) -> str:
        """Stream of dead-lettered jobs with their errors."""
        return f"{self.prefix}:dead"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    def done(self, job_id: str) -> str:
        """List pushed once a job's result is stored: the producer blocks on it."""
        return f"{self.prefix}:done:{job_id}"

    def artifact(self, job_id: str) -> str:
        return f"{self.prefix}:artifact:{job_id}"

    def claim(self, job_id: str) -> str:
        """The identity (run id and artifact) a job id was submitted with: a later entry under
        the same id with another identity is a hijack, not the job."""
        return f"{self.prefix}:claim:{job_id}"

    @property
    def deliveries(self) -> str:
        """Hash job id → deliveries so far (survives re-queueing, unlike the stream's count)."""
        return f"{self.prefix}:deliveries"

    @property
    def errors(self) -> str:
        """Hash job id → last error, reported when the job is dead-lettered."""
        return f"{self.prefix}:errors"

    def consumer(self, name: str) -> str:
        """Heartbeat key of one consumer (expires when the consumer stops beating)."""
        return f"{self.prefix}:consumer:{name}"

    @property
    def stats(self) -> str:
        """Hash of counters: submitted, ok, failed, dead, reclaimed, requeued, duplicates."""
        return f"{self.prefix}:stats"
