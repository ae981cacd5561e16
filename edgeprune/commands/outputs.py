"""Output folders and input files that several commands treat the same way."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import UserError
from pipeline.measure.noise import flag_cell


def require_schedule(path: Path) -> None:
    """A one-line error when the schedule file is missing (click's own would print usage too)."""
    if not path.is_file():
        raise UserError(f"schedule {path} not found: pass --schedule FILE (see schedules/)")


def timing_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The measurement-flag rows of a run or bench table: steady or noisy, and why (always both
    rows, so the columns of several models line up)."""
    why = str(metrics.get("measurement_flag") or "-").removeprefix("noisy: ")
    return [("timing (noise rule)", flag_cell(metrics)), ("  why noisy", why)]


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder that becomes ``out_dir`` only if the block finishes.

    The folder appears whole or not at all: a failed command leaves no half-written result.
    ``out_dir`` must not exist yet, or be empty.
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"output folder {out_dir} is not empty: pass a new --out DIR")
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
