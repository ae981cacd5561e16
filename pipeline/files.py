"""Atomic writes: a reader sees the old file or the whole new one, never half of it.

Every file the pipeline writes goes through a temporary file beside it, renamed over the target
once complete. The rename replaces whatever the name holds, so the target must be a regular file
or absent: a device (``--out /dev/full``), a folder or a symlink is refused before anything is
written, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CONTROL_CHARACTERS, OutputError, UserError, shown


def file_kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (following symlinks): ``a folder``,
    ``a FIFO``, ``a device``, ``a socket``, ``missing``; None for a regular file. Reading a FIFO or
    a device blocks or never ends, so inputs are told apart before they are opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing (part of the path is a file)"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def require_input_file(path: Path, what: str, fix: str, error: type[UserError] = UserError) -> Path:
    """``path`` if it is a regular file; else ``error`` saying what it is instead, e.g.
    ``schedule x.yaml is a folder, not a file: pass --schedule FILE``."""
    kind = file_kind(Path(path))
    if kind is None:
        return Path(path)
    if kind.startswith("missing"):
        raise error(f"{what} {path} not found{kind.removeprefix('missing')}: {fix}")
    raise error(f"{what} {path} is {kind}, not a file: {fix}")


def require_writable_folder(path: Path) -> Path:
    """``path`` created if missing and proven writable (a temporary file made and removed), so a
    read-only or immutable cache fails in one line before any work, not after minutes of it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
    return path


def require_new_folder(path: Path, option: str = "--out") -> Path:
    """``path`` if nothing is there yet (not even a dangling symlink or an empty folder), and its
    parent, where it exists, is a folder; else an ``OutputError`` before any work starts."""
    path = Path(path)
    if CONTROL_CHARACTERS.search(str(path)):
        raise OutputError(f"{option} {shown(str(path))} holds control characters: name a folder "
                          "without them (they would be printed raw by every tool that lists it)")
    if os.path.lexists(path):
        kind = "a symlink" if path.is_symlink() else "a folder" if path.is_dir() else "a file"
        raise OutputError(f"{option} {path} already exists ({kind}): pass a new {option} DIR, "
                          "which is created")
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(f"{option} {path}: {parent} is not a folder: pass a {option} DIR "
                                  "inside a folder")
            break
    return path


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
