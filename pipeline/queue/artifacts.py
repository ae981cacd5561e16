"""Claim-check stores: the model file travels beside the job message, never inside it.

A producer ``put``s the file and gets an ``ArtifactRef`` (URI, sha256, size) to put in the job; a
consumer ``fetch``es it, which checks size and sha256 before anything uses the file; whoever
stores the job's result ``delete``s it. Two stores:

- ``redis://<key>``: the bytes in a key with a TTL on the queue's own Redis (works across machines
  that share nothing but the queue).
- ``file:///dir/<job>.onnx``: a directory every producer and consumer mounts at the same path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from ..errors import QueueError
from ..messages import ArtifactRef
from .config import QueueConfig, QueueKeys

REDIS_SCHEME = "redis://"
FILE_SCHEME = "file://"
_MIB = 1024 * 1024


class ArtifactError(QueueError):
    """An artifact that is too big, missing, or not the file the producer sent.

    Retrying the job cannot fix it, so the queue dead-letters the job at once.
    """


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(ref: ArtifactRef, data: bytes, job_id: str) -> None:
    """Raise ``ArtifactError`` unless ``data`` has ``ref``'s size and sha256."""
    if len(data) != ref.size:
        raise ArtifactError(f"artifact of job {job_id} is {len(data)} bytes, expected {ref.size}: "
                            "it was truncated or replaced; submit the job again")
    digest = sha256_of(data)
    if digest != ref.sha256:
        raise ArtifactError(f"artifact of job {job_id} failed its sha256 check (expected "
                            f"{ref.sha256[:12]}…, got {digest[:12]}…): it was changed or corrupted; "
                            "submit the job again")


class ArtifactStore:
    """Puts, fetches and deletes model files for jobs; see the module docstring for the schemes."""

    def __init__(self, client: redis.Redis, keys: QueueKeys, config: QueueConfig) -> None:
        self.client = client
        self.keys = keys
        self.config = config

    def put(self, job_id: str, path: Path) -> ArtifactRef:
        """Store ``path`` for ``job_id`` in the configured store; too big → ``ArtifactError``."""
        path = Path(path)
        size = path.stat().st_size
        limit = self.config.max_artifact_bytes
        if size > limit:
            raise ArtifactError(f"{path.name} is {size / _MIB:.1f} MiB, over the {limit / _MIB:.4g} MiB "
                                "artifact limit: raise --max-artifact-mb")
        data = path.read_bytes()
        ref = ArtifactRef(uri="", sha256=sha256_of(data), size=len(data))
        store = self.config.artifact_store
        if store == "redis":
            key = self.keys.artifact(job_id)
            self.client.set(key, data, ex=self.config.artifact_ttl_s)
            ref.uri = REDIS_SCHEME + key
        elif store.startswith(FILE_SCHEME):
            target = _file_path(store) / f"{job_id}.onnx"
            _write_atomically(target, data)
            ref.uri = target.as_uri()
        else:
            raise ArtifactError(f"unknown artifact store {store!r}: use redis or file:///shared/dir")
        return ref

    def fetch(self, ref: ArtifactRef, job_id: str, scratch_dir: Path) -> Path:
        """A verified local copy of the artifact (or the shared file itself), ready to use."""
        if ref.uri.startswith(REDIS_SCHEME):
            data = self.client.get(ref.uri[len(REDIS_SCHEME):])
            if data is None:
                raise ArtifactError(f"artifact of job {job_id} is gone from Redis (expired after "
                                    f"{self.config.artifact_ttl_s} s?): submit the job again")
            verify(ref, data, job_id)
            local = Path(scratch_dir) / f"{job_id}.onnx"
            local.write_bytes(data)
            return local
        if ref.uri.startswith(FILE_SCHEME):
            path = _file_path(ref.uri)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise ArtifactError(f"artifact of job {job_id} not found at {path}: mount the shared "
                                    "artifact directory at the same path on producers and consumers") from None
            verify(ref, data, job_id)
            return path
        raise ArtifactError(f"job {job_id} names an artifact URI {ref.uri!r} this consumer cannot "
                            "read: use the redis or file:// store")

    def delete(self, ref: ArtifactRef) -> None:
        """Remove the artifact; a missing one is fine (deleting is idempotent)."""
        if ref.uri.startswith(REDIS_SCHEME):
            self.client.delete(ref.uri[len(REDIS_SCHEME):])
        elif ref.uri.startswith(FILE_SCHEME):
            _file_path(ref.uri).unlink(missing_ok=True)


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(f"{uri}: file URIs must name a local path (file:///dir), not a host")
    return Path(unquote(parts.path))


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
