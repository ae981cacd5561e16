"""``round_to`` checked against the layers it rounds: one at or above every listed layer's
structure count keeps every structure, so the pruner silently prunes nothing."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ScheduleError
from .model import Schedule

#: Which axis of a conv weight (out, in, kh, kw) each group type counts.
_AXIS = {"Filters": 0, "Channels": 1}


def check_round_to(schedule: Schedule, parameters: Mapping[str, Any]) -> None:
    """A ScheduleError for a pruner whose ``round_to`` (its own or the schedule-wide one) is at
    least the structure count of every layer it lists. ``parameters``: the model's
    ``dict(named_parameters())``; weights it lacks are left to ``validate_schedule``."""
    for name, spec in schedule.pruners.items():
        round_to = spec.args.get("round_to", schedule.round_to)
        axis = _AXIS.get(str(spec.args.get("group_type")))
        if not round_to or round_to <= 1 or axis is None:
            continue
        counts = [int(parameters[w].shape[axis]) for w in map(_bare, spec.args.get("weights") or ())
                  if w in parameters and parameters[w].dim() == 4]
        if counts and round_to >= max(counts):
            raise ScheduleError(
                f"{schedule.source}: pruners.{name}: round_to={round_to} is at least the "
                f"{spec.args['group_type'].lower()} of every layer it lists (at most {max(counts)}): "
                f"every layer would keep all of them and nothing is pruned: use a round_to below "
                f"{max(counts)}, such as 8, or none")


def _bare(weight: object) -> str:
    return str(weight).removeprefix("module.")
