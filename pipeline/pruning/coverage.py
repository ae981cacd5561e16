"""Which policies of a schedule a run of N epochs leaves out, so none is skipped silently.

Distiller's example schedules count epochs from the checkpoint they resume (pruning at epoch 180,
lr decay until 400); an edgeprune run counts from 0 for ``--epochs`` epochs. A policy none of
whose epochs falls in the run never fires; a pruner policy that fires but has epochs after the
run's end is cut short (an AGP ramp that never reaches its final sparsity, a structured AGP
pruner that never removes its masked filters).

The epochs a run covers: ``range(epochs)`` while retraining, and for pruner policies also the
schedule's first pruning epoch, at which ``prune_one_shot`` applies them before any training.
Without retraining (``epochs == 0``) nothing is scheduled, so lr schedulers are not reported;
extensions (thinning, a no-op here) never are. LR schedulers that run past the end are normal
(Distiller writes ``ending_epoch: 400``), so only pruner policies are reported as truncated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .compression import first_pruning_epoch

if TYPE_CHECKING:
    from ..schedule import Policy, Schedule

log = logging.getLogger(__name__)

_SECTION_OF = {"pruner": "pruners", "lr_scheduler": "lr_schedulers"}


@dataclass
class PolicyCoverage:
    """Policies a run leaves out: each described as ``<section>.<instance> (epochs ...)``."""

    epochs: int
    not_fired: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per policy left out, naming it and the fix."""
        lines = [f"{p} never fires in a {self.epochs}-epoch run (epochs count from 0): "
                 f"shift its epochs into 0..{max(self.epochs - 1, 0)} or run more epochs"
                 for p in self.not_fired]
        lines += [f"{p} is cut short by the {self.epochs}-epoch run (it fires after the last "
                  "epoch, so its final sparsity or removal is not reached): end it earlier or run more epochs"
                  for p in self.truncated]
        return lines


def describe(policy: "Policy") -> str:
    """``pruners.agp (epochs 180..209 every 2)`` or ``pruners.p (epochs [0, 5])``."""
    if policy.listed_epochs is not None:
        when = f"epochs {sorted(policy.listed_epochs)}"
    else:
        when = f"epochs {policy.starting_epoch}..{(policy.ending_epoch or 0) - 1} every {policy.frequency}"
    return f"{_SECTION_OF[policy.kind]}.{policy.instance} ({when})"


def policy_coverage(schedule: "Schedule", epochs: int) -> PolicyCoverage:
    """The pruner and lr-scheduler policies of ``schedule`` that a run of ``epochs`` leaves out."""
    coverage = PolicyCoverage(epochs)
    one_shot_epoch = first_pruning_epoch(schedule)
    for policy in schedule.policies:
        if policy.kind not in _SECTION_OF or (policy.kind == "lr_scheduler" and epochs == 0):
            continue
        covered = set(range(epochs))
        if policy.kind == "pruner" and one_shot_epoch is not None:
            covered.add(one_shot_epoch)
        fired = [e for e in policy.epochs if e in covered]
        if not fired:
            coverage.not_fired.append(describe(policy))
        elif policy.kind == "pruner" and len(fired) < len(policy.epochs):
            coverage.truncated.append(describe(policy))
    return coverage


def warn_uncovered(schedule: "Schedule", epochs: int) -> PolicyCoverage:
    """``policy_coverage``, each policy left out logged as a warning."""
    coverage = policy_coverage(schedule, epochs)
    for line in coverage.warnings():
        log.warning("%s: %s", schedule.source, line)
    return coverage
