"""What the queue holds right now, for ``edgeprune queue status`` and for tests."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from .config import GROUP, QueueKeys

#: In-flight jobs listed per target (the counts are always complete).
IN_FLIGHT_SHOWN = 100


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _count_keys(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def target_status(client: redis.Redis, keys: QueueKeys, target_name: str) -> dict[str, Any]:
    """Waiting and in-flight jobs of one target's stream."""
    stream = keys.jobs(target_name)
    length = client.xlen(stream)
    in_flight = []
    if length:
        # redis-py types every field bytes | str | int; each key has its own (ids and names are text).
        rows: list[dict[str, Any]] = client.xpending_range(stream, GROUP, min="-", max="+",
                                                           count=IN_FLIGHT_SHOWN)
        in_flight = [{"entry_id": _text(r["message_id"]), "consumer": _text(r["consumer"]),
                      "idle_s": round(r["time_since_delivered"] / 1000.0, 1),
                      "deliveries": r["times_delivered"]} for r in rows]
    pending = client.xpending(stream, GROUP)["pending"] if length else 0
    # Finished entries are deleted from the stream, so what is not pending is waiting.
    return {"stream": stream, "waiting": length - pending, "in_flight": pending,
            "in_flight_jobs": in_flight}


def live_consumers(client: redis.Redis, keys: QueueKeys) -> list[dict[str, Any]]:
    """Heartbeats that have not expired: one per running consumer."""
    now = time.time()
    consumers = []
    for key in client.scan_iter(match=keys.match("consumer"), count=1000):
        raw = client.get(key)
        if raw is None:
            continue
        beat = json.loads(raw)
        beat["last_seen_s"] = round(now - beat.get("beat_at", now), 1)
        consumers.append(beat)
    return sorted(consumers, key=lambda b: b.get("name", ""))


def queue_status(client: redis.Redis, keys: QueueKeys) -> dict[str, Any]:
    """Per-target waiting/in-flight jobs, dead letters, stored results, live consumers, counters.

    ``results_stored`` counts stored results of both kinds (ok and dead-letter failures);
    ``counters`` are lifetime totals: submitted, ok, dead, reclaimed, requeued, released,
    duplicates (second results ignored).
    """
    names = sorted(_text(t) for t in client.smembers(keys.targets))
    targets = {name: target_status(client, keys, name) for name in names}
    counters = {_text(k): int(v) for k, v in client.hgetall(keys.stats).items()}
    return {
        "prefix": keys.prefix,
        "waiting": sum(t["waiting"] for t in targets.values()),
        "in_flight": sum(t["in_flight"] for t in targets.values()),
        "dead_lettered": client.xlen(keys.dead),
        "results_stored": _count_keys(client, keys.match("result")),
        "consumers": live_consumers(client, keys),
        "targets": targets,
        "counters": counters,
    }
