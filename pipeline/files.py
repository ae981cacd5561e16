"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

Every file the pipeline writes goes through a temporary file beside it, renamed over the target
once complete. The rename replaces whatever the name holds, so the target must be a regular file
or absent: a device (``--out /dev/full``), a folder or a symlink is refused before anything is
written, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def check_replaceable(path: Path) -> None:
    """``OutputError`` unless ``path`` is absent or a regular file (symlinks are not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    kind = "a symlink" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    raise OutputError(f"{path} is {kind}; writing it would replace it: pass the path of a regular "
                      "file (new or existing)")


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it is renamed over ``path``.

    Use it where a library writes the file itself (``savefig``, ``torch.onnx.export``); the
    temporary file keeps ``path``'s suffix so format guesses still work.
    """
    path = Path(path)
    check_replaceable(path)
    # A unique name: threads and processes writing the same target do not collide.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring); returns ``path``."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)
