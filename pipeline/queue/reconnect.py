"""Riding out a Redis blip on the producer's side: retry with backoff until a deadline.

redis-py's own ``Retry`` and ``ExponentialBackoff`` do the retrying; the deadline (the producer's
``--timeout``) is enforced by the failure handler, which gives up once it has passed.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..errors import QueueError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors of a connection that went away (a restart, a network blip), not of a bad request.
CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Pauses between attempts grow from the first to the longest.
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


class RedisUnavailable(QueueError):
    """Redis stayed unreachable until the deadline."""


def retry_within(seconds: float, what: str, do: Callable[[], T]) -> T:
    """``do()``, retried with exponential backoff while Redis is unreachable, for up to
    ``seconds``; after that ``RedisUnavailable`` naming ``what`` was being done."""
    deadline = time.monotonic() + seconds

    def give_up_after_deadline(error: Exception) -> None:
        if time.monotonic() >= deadline:
            raise RedisUnavailable(f"Redis was unreachable while {what} and did not come back within "
                                   f"{seconds:g} s ({error}): check the server, or raise --timeout")
        log.warning("Redis unreachable while %s (%s): retrying", what, error)

    retry = Retry(ExponentialBackoff(cap=MAX_BACKOFF_S, base=FIRST_BACKOFF_S), retries=-1,
                  supported_errors=CONNECTION_ERRORS)
    return retry.call_with_retry(do, give_up_after_deadline)
