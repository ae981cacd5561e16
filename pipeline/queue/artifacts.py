"""Claim-check stores: the model file travels beside the job message, never inside it.

A producer ``put``s the file and gets an ``ArtifactRef`` (URI, sha256, size) to put in the job; a
consumer ``fetch``es it, which checks size and sha256 before anything uses the file; whoever
stores the job's result ``delete``s it. Two stores:

- ``redis://<key>``: the bytes in a key with a TTL on the queue's own Redis (works across machines
  that share nothing but the queue).
- ``file:///dir/<job>.onnx``: a directory every producer and consumer mounts at the same path.

A consumer reads and deletes only what its own store would have put there (see ``ArtifactStore``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlsplit

import redis

from ..errors import QueueError
from ..files import atomic_write_bytes
from ..messages import ArtifactRef
from .config import QueueConfig, QueueKeys
from .entries import check_job_id, shown

log = logging.getLogger(__name__)

REDIS_SCHEME = "redis://"
FILE_SCHEME = "file://"
_MIB = 1024 * 1024
#: Says whose limit refused an artifact a consumer was about to read.
CONSUMER = " of this consumer"


class ArtifactError(QueueError):
    """An artifact that is too big, missing, or not the file the producer sent.

    Retrying the job cannot fix it, so the queue dead-letters the job at once.
    """


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_size(size: int, limit: int, what: str, whose: str = "") -> None:
    """Raise ``ArtifactError`` naming the fix when ``size`` bytes are over ``limit``; ``what`` says
    whose size it is (``"model.onnx is"``), ``whose`` whose limit (``CONSUMER``)."""
    if size > limit:
        # Integer division first: a hostile size (10**4000) would overflow a float.
        shown_mib = f"{size / _MIB:.1f}" if size < 2**53 else f"over {2**53 // _MIB:,}"
        raise ArtifactError(f"{what} {shown_mib} MiB, over the {limit / _MIB:.4g} MiB "
                            f"artifact limit{whose}: raise --max-artifact-mb")


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
    """Puts, fetches and deletes model files for jobs; see the module docstring for the schemes.

    A job's artifact URI comes from the queue, so it is trusted only when it names exactly the
    place this store itself puts that job's file: the key ``<prefix>:artifact:<job id>``, or
    ``<job id>.onnx`` in the configured ``file://`` directory (checked after resolving symlinks).
    Anything else raises ``ArtifactError`` and is neither read nor deleted.
    """

    def __init__(self, client: redis.Redis, keys: QueueKeys, config: QueueConfig) -> None:
        self.client = client
        self.keys = keys
        self.config = config

    def put(self, job_id: str, path: Path) -> ArtifactRef:
        """Store ``path`` for ``job_id`` in the configured store; too big → ``ArtifactError``."""
        check_job_id(job_id)
        path = Path(path)
        size = path.stat().st_size
        self._check_size(size, f"{path.name} is")
        data = path.read_bytes()
        ref = ArtifactRef(uri="", sha256=sha256_of(data), size=len(data))
        store = self.config.artifact_store
        if store == "redis":
            key = self.keys.artifact(job_id)
            self.client.set(key, data, ex=self.config.artifact_ttl_s)
            ref.uri = REDIS_SCHEME + key
        elif store.startswith(FILE_SCHEME):
            target = _file_path(store) / f"{job_id}.onnx"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
            ref.uri = target.as_uri()
        else:
            raise ArtifactError(f"unknown artifact store {store!r}: use redis or file:///shared/dir")
        return ref

    def fetch(self, ref: ArtifactRef, job_id: str, scratch_dir: Path) -> Path:
        """A verified local copy of the artifact (or the shared file itself), ready to use.

        The size limit is checked on the declared size and on the stored size (STRLEN, stat)
        before a byte is read.
        """
        self._check_size(ref.size, f"the artifact of job {job_id} is declared", CONSUMER)
        if ref.uri.startswith(REDIS_SCHEME):
            key = self._own_key(ref, job_id)
            self._check_key_type(key, job_id)
            stored = self.client.strlen(key)
            if stored == 0 and not self.client.exists(key):
                raise ArtifactError(f"artifact of job {job_id} is gone from Redis (expired after "
                                    f"{self.config.artifact_ttl_s} s?): submit the job again")
            self._check_size(stored, f"the artifact of job {job_id} is", CONSUMER)
            if stored != ref.size:
                raise ArtifactError(f"artifact of job {job_id} is {stored} bytes, expected {ref.size}: "
                                    "it was truncated or replaced; submit the job again")
            # bytes: an ONNX file is binary, so no client could have decoded it to str.
            data = cast(bytes, self.client.get(key) or b"")
            verify(ref, data, job_id)
            # The scratch folder is the job's own: a fixed name, nothing taken from the queue.
            local = Path(scratch_dir) / "model.onnx"
            local.write_bytes(data)
            return local
        if ref.uri.startswith(FILE_SCHEME):
            path = self._own_file(ref, job_id)
            try:
                with path.open("rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    self._check_size(size, f"the artifact of job {job_id} is", CONSUMER)
                    data = handle.read(self.config.max_artifact_bytes + 1)
            except OSError as exc:
                raise ArtifactError(f"cannot read the artifact of job {job_id} at {path} "
                                    f"({exc.strerror}): check the shared directory's permissions") from None
            verify(ref, data, job_id)
            return path
        raise ArtifactError(f"job {job_id} names an artifact URI {shown(ref.uri)} this consumer cannot "
                            "read: use the redis or file:// store")

    def delete(self, ref: ArtifactRef, job_id: str) -> bool:
        """Remove the job's artifact if ``ref`` names this store's own place for it; a missing
        one is fine (deleting is idempotent). False, touching nothing, when ``ref`` names any
        other key or file."""
        try:
            if ref.uri.startswith(REDIS_SCHEME):
                key = self._own_key(ref, job_id)
                self._check_key_type(key, job_id)
                self.client.delete(key)
            elif ref.uri.startswith(FILE_SCHEME):
                self._own_file(ref, job_id, must_exist=False).unlink(missing_ok=True)
            else:
                return False
        except ArtifactError as exc:
            log.warning("artifact of job %s left alone: %s", job_id, exc)
            return False
        return True

    def _check_key_type(self, key: str, job_id: str) -> None:
        """``ArtifactError`` when ``key`` holds anything but a string (or nothing): such a key
        is not the queue's artifact, so it is neither read nor deleted."""
        kind = self.client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind not in ("string", "none"):
            raise ArtifactError(f"the artifact key of job {job_id} holds a Redis {kind}, not a model "
                                "file: it was not stored by this queue; submit the job again")

    def _check_size(self, size: int, what: str, whose: str = "") -> None:
        check_size(size, self.config.max_artifact_bytes, what, whose)

    def _own_key(self, ref: ArtifactRef, job_id: str) -> str:
        """The job's artifact key, when ``ref`` names exactly it."""
        key = self.keys.artifact(check_job_id(job_id))
        if ref.uri != REDIS_SCHEME + key:
            raise ArtifactError(f"job {job_id} names the artifact {shown(ref.uri)}, not its own key "
                                f"{key}: a consumer reads and deletes only the queue's own artifacts")
        return key

    def _own_file(self, ref: ArtifactRef, job_id: str, must_exist: bool = True) -> Path:
        """The job's file in the configured directory, when ``ref`` names exactly it (after
        resolving symlinks) and it is a regular file."""
        store = self.config.artifact_store
        if not store.startswith(FILE_SCHEME):
            raise ArtifactError(f"job {job_id} names the file artifact {shown(ref.uri)}, but this "
                                f"consumer's artifact store is {store}: start it with --artifacts "
                                "file:///dir, the directory the producers write to")
        expected = _file_path(store).resolve() / f"{check_job_id(job_id)}.onnx"
        path = _file_path(ref.uri).resolve()
        if path != expected:
            raise ArtifactError(f"job {job_id} names the artifact {shown(ref.uri)}, not its own file "
                                f"{expected}: a consumer reads and deletes only the queue's own artifacts")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if not must_exist:
                return path
            raise ArtifactError(f"artifact of job {job_id} not found at {path}: mount the shared "
                                "artifact directory at the same path on producers and consumers") from None
        if not stat.S_ISREG(mode):
            raise ArtifactError(f"artifact of job {job_id} at {path} is not a regular file: "
                                "submit the job again")
        return path


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(f"{uri}: file URIs must name a local path (file:///dir), not a host")
    path = unquote(parts.path)
    if "\x00" in path:
        raise ArtifactError(f"{shown(uri)}: a file URI cannot hold a NUL character")
    return Path(path)
