"""Atomic writes (``pipeline.files``): only regular files are replaced, and no temporary is left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.errors import OutputError
from pipeline.files import atomic_output, atomic_write_bytes, atomic_write_text


def test_a_regular_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    atomic_write_bytes(tmp_path / "model.onnx", b"\x00\x01")
    assert target.read_text() == "new" and (tmp_path / "model.onnx").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "result.json"]


def test_a_device_is_refused_and_left_a_device() -> None:
    with pytest.raises(OutputError, match=r"^/dev/full is not a regular file; writing it would replace it"):
        atomic_write_text(Path("/dev/full"), "x")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_anything_but_a_regular_file_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "out.json"
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = os.lstat(target)
    with pytest.raises(OutputError, match="writing it would replace it"):
        atomic_write_text(target, "x")
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
