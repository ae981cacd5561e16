"""Output folders and input files that several commands treat the same way."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pipeline.errors import DataError, ModelError, OutputError, ScheduleError
from pipeline.files import require_input_file, require_new_folder
from pipeline.measure.noise import flag_cell

if TYPE_CHECKING:
    from pipeline.flow import RunConfig
    from pipeline.settings import Settings


def require_schedule(path: Path) -> None:
    """A one-line error when the schedule is missing or not a file (a folder, a FIFO, a device
    are named as such; click's own error would print usage too)."""
    require_input_file(path, "schedule", "pass --schedule FILE (see schedules/)", ScheduleError)


def check_run_inputs(config: RunConfig, settings: Settings) -> None:
    """The one-line error of a run's inputs, before any slow work and before any banner: the
    checkpoint and distillation teacher files, the schedule read and checked against the model,
    the pretrained weights loaded once (a second at most) and the data set present."""
    from pipeline.flow import load_model, read_schedule
    from pipeline.models import create_model

    for path, what in ((config.checkpoint, "--checkpoint"), (config.kd_teacher, "--kd-teacher")):
        if path is not None:
            require_input_file(path, what, f"pass {what} FILE (a .th or .pt file)", ModelError)
    read_schedule(config, create_model(config.model, shortcut=config.shortcut))
    load_model(config, settings)
    data = settings.data_path
    if not os.path.lexists(data):
        raise DataError(f"data set {data} not found: pass --data PATH (a cifar-10-batches-py folder, "
                        "cifar-10-python.tar.gz or an image-folder tree)")


def timing_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The measurement-flag rows of a run or bench table: steady or noisy, and why (always both
    rows, so the columns of several models line up)."""
    why = str(metrics.get("measurement_flag") or "-").removeprefix("noisy: ")
    return [("timing (noise rule)", flag_cell(metrics)), ("  why noisy", why)]


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder that becomes ``out_dir`` only if the block finishes.

    The folder appears whole or not at all: a failed command leaves no half-written result.
    ``out_dir`` must not exist yet (``require_new_folder``; commands call it before slow work).
    """
    require_new_folder(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
    except OSError as exc:  # /proc, a read-only or full disk: before any work, in one line
        raise OutputError(f"--out {out_dir}: cannot create a folder there ({exc.strerror}): pass a "
                          "--out DIR in a folder you can write") from None
    try:
        yield staging
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
