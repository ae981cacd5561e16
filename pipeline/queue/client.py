"""Redis connections from a URL, checked before the queue uses them.

Every URL that reaches a log line or an error goes through ``pipeline.redact.redact_url`` first,
so a password in ``redis://:secret@host`` is never printed.
"""

from __future__ import annotations

import logging

import redis

from ..errors import QueueError
from ..redact import redact_url

log = logging.getLogger(__name__)

#: Seconds to wait for the TCP (and TLS) handshake before calling Redis unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a reply may take: above the longest blocking wait the queue issues (``MAX_BLOCK_S``).
SOCKET_TIMEOUT_S = 30.0
#: Bytes per socket read: large, because artifacts are megabytes (4 MiB reads fetch a 3.4 MB model
#: about twice as fast as redis-py's 64 KiB default, and cost small replies nothing measurable).
SOCKET_READ_BYTES = 4 * 1024 * 1024


def connect(url: str) -> redis.Redis:
    """A checked connection to the Redis at ``url`` (``redis://`` or ``rediss://``).

    An unreachable server, a wrong password or a bad URL raise ``QueueError`` with the fix.
    """
    shown = redact_url(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=SOCKET_TIMEOUT_S, socket_keepalive=True,
                                      socket_read_size=SOCKET_READ_BYTES, health_check_interval=30)
    except ValueError as exc:
        raise QueueError(f"bad Redis URL {shown}: {exc}; use redis://[:password@]host:port/db "
                         "or rediss:// for TLS") from None
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        raise QueueError(f"Redis at {shown} refused the credentials: put the right password in "
                         "the URL (redis://:password@host:port)") from None
    except redis.exceptions.ResponseError as exc:
        if "NOAUTH" in str(exc) or "AUTH" in str(exc).upper():
            raise QueueError(f"Redis at {shown} needs a password: pass --redis "
                             "redis://:password@host:port") from None
        raise QueueError(f"Redis at {shown} answered PING with an error ({exc}): check the URL") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        raise QueueError(f"cannot reach Redis at {shown}: start redis-server or pass --redis URL") from None
    log.info("connected to Redis at %s", shown)
    return client
