"""What a stream entry may hold before a consumer acts on it: the queue's content is hostile
until it parses into a valid ``Job`` here.

Anything that does not (not JSON, a field of the wrong type, a job id outside ``JOB_ID_PATTERN``,
a job for another target than its stream's) is refused with ``BadEntry``; the queue dead-letters
it with an excerpt of the raw payload and acknowledges it, so one bad entry never blocks a stream.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import ValidationError

from ..errors import QueueError
from ..messages import Job, parse_checked
from .signing import signed_object

#: Job ids name Redis keys and files: letters, digits, ``_`` and ``-`` only (uuid4 hex in practice),
#: so no id can climb out of a folder (``../``), name an absolute path or hold a glob or ``:``.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Largest job message read (a job with its schedule is a few KB).
MAX_MESSAGE_BYTES = 1024 * 1024
#: Characters of a refused entry's raw payload kept in its dead letter.
RAW_KEPT_CHARS = 2000
#: Characters of any value echoed in a refusal reason.
SHOWN_CHARS = 80
#: Largest magnitude of any integer in a message: arithmetic on it stays cheap and exact.
MAX_INT = 2**63
#: Bounds of the job fields a consumer computes with, so no value overflows or allocates wildly.
MAX_ARTIFACT_SIZE = 2**53
MAX_EVAL_SUBSET = 10**9
MAX_CLASSES = 10**6
MAX_INPUT_DIMS = 8
MAX_INPUT_DIM = 10**6


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


def number_problem(value: Any, where: str) -> str | None:
    """What is wrong with the numbers in ``value`` (nested lists and dicts too): a non-finite
    float or an integer beyond ``MAX_INT``; None when nothing is."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}"[:100]) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, at) for v in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{at} is {item}: numbers must be finite"
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            return f"{at} is an integer of {item.bit_length()} bits: out of range"
    return None


def parse_entry(fields: dict[Any, Any], target_name: str, secret: bytes | None = None) -> Job:
    """The job in a stream entry's ``job`` field, fully checked (signed with ``secret`` when
    given), or ``BadEntry`` with the reason."""
    raw = fields.get(b"job", fields.get("job"))
    if not isinstance(raw, (bytes, str)):
        raise BadEntry("the entry has no 'job' field: only JobQueue.submit adds entries to a job stream")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadEntry(f"the job message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}: "
                       "model files travel as artifacts, not inside the message")
    body = signed_object(raw, "job", secret, BadEntry, "unreadable job message ({})")
    problem = number_problem(body, "job")
    if problem:
        raise BadEntry(f"unreadable job message ({problem})")
    try:
        job = parse_checked(Job, raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise BadEntry(f"unreadable job message ({problems[:300]})") from None
    check_job_id(job.job_id)
    check_bounds(job)
    if job.target.name != target_name:
        raise BadEntry(f"job for target {shown(job.target.name)} on the stream of {target_name}: "
                       "submit it through JobQueue.submit")
    return job


def check_bounds(job: Job) -> None:
    """Raise ``BadEntry`` unless the sizes and counts a consumer computes with are in range."""
    _within("artifact.size", job.artifact.size, 0, MAX_ARTIFACT_SIZE)
    _within("eval_subset", job.eval_subset, 0, MAX_EVAL_SUBSET)
    _within("model.num_classes", job.model.num_classes, 1, MAX_CLASSES)
    shape = job.model.input_shape
    if not 1 <= len(shape) <= MAX_INPUT_DIMS:
        raise BadEntry(f"model.input_shape has {len(shape)} dimensions: 1 to {MAX_INPUT_DIMS} expected")
    for dim in shape:
        _within("model.input_shape", dim, 1, MAX_INPUT_DIM)
    _within("model.macs", job.model.macs, 0, MAX_INT)
    _within("model.params", job.model.params, 0, MAX_INT)


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise BadEntry(f"{name} is {shown(value)}, outside [{low}, {high}]: submit the job through "
                       "JobQueue.submit")
