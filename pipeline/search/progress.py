"""A plain-text live table of a sweep: one row per finished trial, then the best so far.

Rows are appended (no cursor tricks), so the table reads the same in a terminal, a log file or CI.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from pipeline.measure.noise import flag_cell
from pipeline.messages import TrialRecord

from .config import SweepConfig
from .engine import best_trials


def _cell(value: Any, width: int) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    return text[:width].rjust(width)


class ProgressTable:
    """Prints each finished trial with its searched parameters and objective metrics."""

    def __init__(self, config: SweepConfig, stream: TextIO | None = None):
        self.config = config
        self.stream = stream or sys.stdout
        self.params = list(config.searched)
        self.metrics = [o.name for o in config.objectives] + \
            [c.metric for c in config.constraints if c.metric not in {o.name for o in config.objectives}]
        self.records: list[TrialRecord] = []
        self.widths = [5, 13] + [max(10, min(len(n), 22)) for n in self.params + self.metrics] + [11, 8]

    def header(self) -> None:
        names = ["trial", "status"] + self.params + self.metrics + ["timing", "seconds"]
        self._print(" ".join(n[:w].rjust(w) for n, w in zip(names, self.widths)))

    def __call__(self, record: TrialRecord) -> None:
        """Print ``record``'s row and the best trial(s) so far (use as ``on_record``)."""
        if not self.records:
            self.header()
        self.records.append(record)
        values = [record.number, record.status] + [record.params.get(p) for p in self.params] + \
            [record.metrics.get(m) for m in self.metrics] + \
            [flag_cell(record.metrics), round(record.compute_s, 1)]
        self._print(" ".join(_cell(v, w) for v, w in zip(values, self.widths)))
        if record.reason and record.status != "ok":
            self._print(f"      {record.reason}")
        self._print("      " + self.best_line())

    def best_line(self) -> str:
        best = best_trials(self.config, self.records)
        if not best:
            return "best so far: none feasible yet"
        if len(self.config.objectives) == 1:
            o = self.config.objectives[0]
            return f"best so far: trial {best[0].number} {o.name}={best[0].metrics[o.name]:.4g}"
        return "Pareto front so far: trials " + ", ".join(str(r.number) for r in best)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
