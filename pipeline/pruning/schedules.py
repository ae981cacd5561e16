"""Schedules that name this package's classes: read them, rewrite them, check them against a model.

``pipeline.schedule`` holds the types and the reader and knows no pruner; these functions hand it
this package's ``CATALOG`` (importing the package registers every built-in class first).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..schedule import TEXT_ORIGIN, Override, Schedule, apply_overrides, parse_schedule, read_schedule, to_overrides
from .base import PruningContext
from .compression import check_schedule
from .depths import fit_depth
from .registry import CATALOG

if TYPE_CHECKING:
    import torch
    from torch import nn

#: What callers pass as overrides: ``Override``s, ``--set`` strings, or ``{"<instance>.<key>": value}``.
Overrides = Iterable[Override | str] | Mapping[str, Any]


def load_schedule(source: Path | str, overrides: Overrides = (), partial: bool = False) -> Schedule:
    """Read a schedule from a YAML file (a ``Path``, or a string naming one) or YAML text, every
    class and argument checked, then rewritten by ``overrides``. Any problem is a ScheduleError.

    ``partial`` keeps null arguments as holes (a sweep's base schedule; ``Schedule.unset_keys``).
    """
    return read_schedule(source, CATALOG, overrides, partial)


def schedule_from_data(data: Any, origin: str = TEXT_ORIGIN, partial: bool = False) -> Schedule:
    """A Schedule from a parsed YAML mapping (or one built in code), every field checked."""
    return parse_schedule(data, CATALOG, origin, partial)


def with_overrides(schedule: Schedule, overrides: Overrides, partial: bool = False) -> Schedule:
    """A copy of ``schedule`` rewritten by ``overrides`` and checked again."""
    return apply_overrides(schedule, to_overrides(overrides), CATALOG, partial)


def validate_schedule(schedule: Schedule, model: "nn.Module", example_input: "torch.Tensor | None" = None) -> None:
    """Check ``schedule`` against ``model`` (weights exist, structures are prunable, no overlaps).

    Its fields are checked again first, so a Schedule built in code is held to the reader's rules;
    with ``cross_depth``, names of blocks deeper than ``model`` are then left out.
    """
    checked = parse_schedule(schedule.to_dict(), CATALOG, schedule.source)
    fitted, _ = fit_depth(checked, model)
    check_schedule(fitted, PruningContext(model, example_input, origin=schedule.source))
