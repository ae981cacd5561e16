"""Optional message signing: an HMAC-SHA256 over a job's or a result's canonical bytes.

With a shared secret (``EDGEPRUNE_QUEUE_SECRET``, or a file named by ``--queue-secret-file`` /
``EDGEPRUNE_QUEUE_SECRET_FILE``; never on the command line, where ``ps`` shows it) every job and
result the queue writes carries a ``sig`` field, and the queue believes only entries whose
signature checks, as Celery's message signing does: an unsigned or wrongly signed job is
dead-lettered, a result is ignored with a warning. The secret authenticates writers; Redis ACLs
(docs/queue.md) decide who may write at all.

Canonical bytes: the message's JSON object without ``sig``, keys sorted, no spaces, ASCII only,
after a domain tag (``job`` or ``result``), so a signed job can never pass as a result.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import QueueError

#: Environment variables that carry the secret itself, or the path of a file holding it.
SECRET_ENV = "EDGEPRUNE_QUEUE_SECRET"
SECRET_FILE_ENV = "EDGEPRUNE_QUEUE_SECRET_FILE"
#: Field of a signed message that holds its signature (hex).
SIG_FIELD = "sig"
#: Shortest secret accepted: 128 bits, as printable characters or bytes.
MIN_SECRET_BYTES = 16
#: Largest secret file read.
MAX_SECRET_FILE_BYTES = 4096


class SignatureError(QueueError):
    """A message without a valid signature where one is required."""


def canonical_bytes(domain: str, body: Mapping[str, Any]) -> bytes:
    """What is signed: ``domain`` and the message without its signature, in one fixed form."""
    payload = {k: v for k, v in body.items() if k != SIG_FIELD}
    return domain.encode() + b"\n" + json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                                ensure_ascii=True, allow_nan=True).encode()


def signature(secret: bytes, domain: str, body: Mapping[str, Any]) -> str:
    """The hex HMAC-SHA256 of ``body``'s canonical bytes under ``secret``."""
    return hmac.new(secret, canonical_bytes(domain, body), hashlib.sha256).hexdigest()


def signed_json(secret: bytes | None, domain: str, body: dict[str, Any]) -> str:
    """``body`` as JSON, with its ``sig`` when there is a ``secret``."""
    if secret:
        body = {**body, SIG_FIELD: signature(secret, domain, body)}
    return json.dumps(body, sort_keys=True)


def check_signature(secret: bytes, domain: str, body: Mapping[str, Any]) -> None:
    """Raise ``SignatureError`` unless ``body`` carries the right ``sig`` (compared in constant time)."""
    given = body.get(SIG_FIELD)
    if not isinstance(given, str):
        raise SignatureError(f"the {domain} carries no signature, but this queue signs its messages: "
                             "give the writer the same queue secret")
    if not hmac.compare_digest(given.encode(errors="replace"),
                               signature(secret, domain, body).encode()):
        raise SignatureError(f"the {domain}'s signature does not match: it was changed, or signed "
                             "with another secret; give every agent the same queue secret")


def signed_object(raw: bytes | str, domain: str, secret: bytes | None,
                  error: Callable[[str], Exception], unreadable: str) -> dict[str, Any]:
    """``raw`` read as one JSON object whose signature for ``domain`` checks (when there is a
    ``secret``); anything else raises ``error(line)``, the line for unreadable text being
    ``unreadable`` formatted with what is wrong."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise error(unreadable.format(f"not JSON: {str(exc)[:120]}")) from None
    if not isinstance(body, dict):
        raise error(unreadable.format(f"a JSON {type(body).__name__}, not an object"))
    if secret is not None:
        try:
            check_signature(secret, domain, body)
        except SignatureError as exc:
            raise error(str(exc)) from None
    return body


def read_secret_file(path: Path) -> bytes:
    """The secret in ``path`` (trailing newline dropped), or a one-line ``QueueError``."""
    path = Path(path)
    try:
        if not path.is_file():
            raise QueueError(f"queue secret file {path} is not a regular file: name the file that "
                             "holds the shared secret")
        with path.open("rb") as handle:
            secret = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise QueueError(f"cannot read the queue secret file {path} ({exc.strerror}): check its "
                         "permissions") from None
    if len(secret) > MAX_SECRET_FILE_BYTES:
        raise QueueError(f"queue secret file {path} is over {MAX_SECRET_FILE_BYTES} bytes: it should "
                         "hold one secret, e.g. from `openssl rand -hex 32`")
    return _checked(secret.rstrip(b"\r\n"), f"the queue secret in {path}")


def load_secret(secret_file: Path | None = None, env: Mapping[str, str] | None = None) -> bytes | None:
    """The queue secret: from ``secret_file``, else ``EDGEPRUNE_QUEUE_SECRET_FILE``, else
    ``EDGEPRUNE_QUEUE_SECRET``; None (no signing) when none is set."""
    env = os.environ if env is None else env
    if secret_file is None and env.get(SECRET_FILE_ENV):
        secret_file = Path(env[SECRET_FILE_ENV])
    if secret_file is not None:
        return read_secret_file(secret_file)
    if env.get(SECRET_ENV):
        return _checked(env[SECRET_ENV].encode(), SECRET_ENV)
    return None


def _checked(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise QueueError(f"{where} is {len(secret)} bytes, under {MIN_SECRET_BYTES}: use a long "
                         "random secret, e.g. from `openssl rand -hex 32`")
    return secret
