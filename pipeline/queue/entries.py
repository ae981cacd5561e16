"""What a stream entry may hold before a consumer acts on it: the queue's content is hostile
until it parses into a valid ``Job`` here.

Anything that does not (not JSON, a field of the wrong type, a job id outside ``JOB_ID_PATTERN``,
a job for another target than its stream's) is refused with ``BadEntry``; the queue dead-letters
it with an excerpt of the raw payload and acknowledges it, so one bad entry never blocks a stream.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..errors import QueueError
from ..messages import Job, parse_checked

#: Job ids name Redis keys and files: letters, digits, ``_`` and ``-`` only (uuid4 hex in practice),
#: so no id can climb out of a folder (``../``), name an absolute path or hold a glob or ``:``.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Largest job message read (a job with its schedule is a few KB).
MAX_MESSAGE_BYTES = 1024 * 1024
#: Characters of a refused entry's raw payload kept in its dead letter.
RAW_KEPT_CHARS = 2000
#: Characters of any value echoed in a refusal reason.
SHOWN_CHARS = 80


class BadEntry(QueueError):
    """A stream entry that is not a valid job for this stream; it is dead-lettered, never run."""


def shown(value: Any) -> str:
    """``value``'s repr, cut to ``SHOWN_CHARS`` so a hostile value cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def check_job_id(job_id: object) -> str:
    """``job_id`` if it matches ``JOB_ID_PATTERN``, else ``BadEntry``."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise BadEntry(f"job id {shown(job_id)} is not 1-64 letters, digits, '_' or '-': "
                       "use the ids the producer makes (uuid4 hex)")
    return job_id


def raw_payload(fields: dict[Any, Any]) -> str:
    """The entry's fields as text, at most ``RAW_KEPT_CHARS`` characters, for its dead letter."""
    parts = []
    for key, value in fields.items():
        key = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        value = value[:RAW_KEPT_CHARS].decode(errors="replace") if isinstance(value, bytes) else str(value)
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= RAW_KEPT_CHARS else text[:RAW_KEPT_CHARS] + "…"


def parse_entry(fields: dict[Any, Any], target_name: str) -> Job:
    """The job in a stream entry's ``job`` field, fully checked, or ``BadEntry`` with the reason."""
    raw = fields.get(b"job", fields.get("job"))
    if not isinstance(raw, (bytes, str)):
        raise BadEntry("the entry has no 'job' field: only JobQueue.submit adds entries to a job stream")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadEntry(f"the job message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}: "
                       "model files travel as artifacts, not inside the message")
    try:
        job = parse_checked(Job, raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise BadEntry(f"unreadable job message ({problems[:300]})") from None
    check_job_id(job.job_id)
    if job.target.name != target_name:
        raise BadEntry(f"job for target {shown(job.target.name)} on the stream of {target_name}: "
                       "submit it through JobQueue.submit")
    return job
