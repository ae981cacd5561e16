"""What a person watching a sweep sees: a table row per finished trial and the best trial so far
(the line per stage as it ends is ``pipeline.progress.StageLines``).

Everything is appended (no cursor tricks), so it reads the same in a terminal, a log file or CI.
The table is laid out with ``rich`` for the terminal's width: parameter names that would not fit
are shortened (``fp70_ds``) and a legend names them in full once; values are never cut (a
categorical parameter's column is as wide as its longest value, and a cell that still does not
fit wraps onto a second line).
"""

from __future__ import annotations

import re
import shutil
import sys
from typing import Any, Mapping, Sequence, TextIO

from pipeline.measure.noise import flag_cell
from pipeline.messages import TrialRecord
from pipeline.status import TrialStatus

from ..progress import format_duration, format_metric
from .config import SweepConfig
from .engine import best_trials


def _initials(words: Sequence[str]) -> str:
    return "".join(w if w.isdigit() else w[0] for w in words)


def abbreviate(name: str, drop_suffix: Sequence[str] = ()) -> str:
    """``filter_pruner_70_desired_sparsity`` -> ``fp70_ds``: initials of the words, numbers kept,
    the last two words apart (they say what is set); without ``drop_suffix`` (words every
    parameter ends with) -> ``fp70``."""
    parts = [p for p in re.split(r"[_.\-]+", name) if p]
    if drop_suffix and len(parts) > len(drop_suffix) and parts[-len(drop_suffix):] == list(drop_suffix):
        return _initials(parts[:-len(drop_suffix)])
    if len(parts) <= 2:
        return _initials(parts) if len(parts) == 2 else name
    return f"{_initials(parts[:-2])}_{_initials(parts[-2:])}"


def _common_suffix(names: Sequence[str]) -> list[str]:
    split = [[p for p in re.split(r"[_.\-]+", n) if p] for n in names]
    suffix: list[str] = []
    while len(names) > 1 and all(len(p) > len(suffix) + 1 for p in split):
        word = split[0][-len(suffix) - 1]
        if any(p[-len(suffix) - 1] != word for p in split):
            break
        suffix.insert(0, word)
    return suffix


def short_names(names: Sequence[str], room: int) -> dict[str, str]:
    """Each name as it is when all fit in ``room`` characters (with a space between), else its
    abbreviation (words all names end with dropped; made unique with a number)."""
    if sum(len(n) + 1 for n in names) <= room:
        return {n: n for n in names}
    suffix = _common_suffix(names)
    shown: dict[str, str] = {}
    for name in names:
        short = abbreviate(name, suffix) if len(name) > 8 else name
        candidate, k = short, 2
        while candidate in shown.values():
            candidate, k = f"{short}{k}", k + 1
        shown[name] = candidate
    return shown


def pack(entries: Sequence[str], width: int, indent: str = "") -> str:
    """``entries`` joined by ``; `` into lines of at most ``width``, none split across lines."""
    lines, current = [], indent
    for entry in entries:
        piece = entry if current == indent else f"; {entry}"
        if current != indent and len(current) + len(piece) > width:
            lines.append(current + ";")
            current, piece = indent, entry
        current += piece
    return "\n".join(lines + [current])


#: The narrowest each kind of column gets before the table gives up fitting the width.
_MIN_WIDTH = {"trial": 5, "status": 9, "timing": 6, "wall s": 6, "comp s": 6}
_MIN_PARAM, _MIN_METRIC = 4, 8


class ProgressTable:
    """Prints each finished trial with its searched parameters and metrics, then the best so far.

    Columns: trial, status, the searched parameters, the sweep's objectives and constrained
    metrics, Top1 beside them, the timing flag, and the trial's wall and compute seconds (compute:
    pruning, retraining, export and measurement; wall: start to end, waiting included).
    """

    def __init__(self, config: SweepConfig, stream: TextIO | None = None, width: int | None = None,
                 earlier: Sequence[TrialRecord] = ()):
        """``earlier``: the study's trials from before this run (a resumed sweep), which the best
        so far counts though their rows are not printed again."""
        self.config = config
        self.stream = stream or sys.stdout
        self.width = width or shutil.get_terminal_size((120, 24)).columns
        self.params = list(config.searched)
        ranked = [o.name for o in config.objectives]
        ranked += [c.metric for c in config.constraints if c.metric not in ranked]
        self.metrics = ranked if "Top1" in ranked else ranked + ["Top1"]
        self.records: list[TrialRecord] = [r for r in earlier if r.status != TrialStatus.RUNNING]
        self._headed = False
        fixed = [("trial", 5), ("status", 13)] + [(m, max(_MIN_METRIC, min(len(m), 13)))
                                                  for m in self.metrics] + \
            [("timing", 11), ("wall s", 7), ("comp s", 7)]
        room = self.width - sum(w + 1 for _, w in fixed)
        self.shown = short_names(self.params, room)
        values = [_longest_value(config.searched[p]) for p in self.params]
        self.columns = fixed[:2] + [(s, max(_MIN_PARAM, min(len(s), 12), v))
                                    for s, v in zip(self.shown.values(), values)] + fixed[2:]
        self._minimum = [_MIN_WIDTH.get(n, _MIN_PARAM if i - 2 < len(self.params) else _MIN_METRIC)
                         for i, (n, _) in enumerate(self.columns)]
        for i, longest in enumerate(values):  # a categorical value (a model name) is never cut
            self._minimum[2 + i] = max(self._minimum[2 + i], longest)
        # Too narrow even at the minimum widths: the timing flag moves under the row.
        self.flag_column = sum(m + 1 for m in self._minimum) - 1 <= self.width
        if not self.flag_column:
            index = [n for n, _ in self.columns].index("timing")
            del self.columns[index], self._minimum[index]
        self._fit()

    def _fit(self) -> None:
        """Narrow the widest columns, none below its minimum, until a row fits the width."""
        while sum(w + 1 for _, w in self.columns) - 1 > self.width:
            narrowable = [i for i, (_, w) in enumerate(self.columns) if w > self._minimum[i]]
            if not narrowable:
                break
            index = max(narrowable, key=lambda i: self.columns[i][1] - self._minimum[i])
            name, width = self.columns[index]
            self.columns[index] = (name, width - 1)

    def _print_row(self, cells: Sequence[str], header: bool = False) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, show_header=header, padding=(0, 1, 0, 0), show_edge=False,
                      pad_edge=False, header_style="bold")
        for index, (name, width) in enumerate(self.columns):
            # fold: a value too wide for its column wraps onto another line, it is never cut
            # (headers stay on one line: the legend names every shortened one in full).
            table.add_column(name, width=width, min_width=width, max_width=width, no_wrap=header,
                             overflow="ellipsis" if header else "fold",
                             justify="left" if index == 1 else "right")
        if not header:
            table.add_row(*cells)
        # box=None and fixed widths: every row printed alone lines up under the header.
        Console(file=self.stream, width=self.width, highlight=False, soft_wrap=False,
                emoji=False, markup=False).print(table)
        if header:
            self.stream.flush()

    def header(self) -> None:
        self._print_row([], header=True)
        legend = [f"{s} = {n}" for n, s in self.shown.items() if s != n]
        if legend:
            self._line(pack(legend, self.width, indent="  "))

    def row_cells(self, record: TrialRecord) -> list[str]:
        wall = record.finished_at - record.started_at if record.finished_at and record.started_at else None
        return ([str(record.number), str(record.status)]
                + [format_metric(p, record.params.get(p)) for p in self.params]
                + [format_metric(m, record.metrics.get(m)) for m in self.metrics]
                + ([flag_cell(record.metrics)] if self.flag_column else [])
                + ["-" if wall is None else f"{wall:.1f}", f"{record.compute_s:.1f}"])

    def __call__(self, record: TrialRecord) -> None:
        """Print ``record``'s row and the best trial(s) so far (use as ``on_record``)."""
        if not self._headed:
            self.header()
            self._headed = True
        self.records.append(record)
        self._print_row(self.row_cells(record))
        if record.reason and record.status != TrialStatus.OK:
            self._line(f"      {record.reason}")
        if not self.flag_column and record.metrics.get("measurement_flag"):
            self._line(f"      timing: {flag_cell(record.metrics)}: {record.metrics['measurement_flag']}")
        self._line("      " + self.best_line())

    def best_line(self, records: Sequence[TrialRecord] | None = None, so_far: bool = True) -> str:
        return best_line(self.config, self.records if records is None else records, so_far)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _longest_value(spec: Any) -> int:
    """The widest of a categorical parameter's values as a cell shows them (0 for a range)."""
    return max((len(format_metric(spec.name, v)) for v in spec.values), default=0)


def describe(config: SweepConfig, record: TrialRecord) -> str:
    """``trial 3 (Latency 1.54 ms, Top1 71.2%)``: the ranked metrics rounded, Top1 beside them."""
    names = [o.name for o in config.objectives] + [c.metric for c in config.constraints]
    names = list(dict.fromkeys(names + ["Top1"]))
    shown = ", ".join(f"{n} {format_metric(n, record.metrics.get(n))}" for n in names
                      if record.metrics.get(n) is not None)
    return f"trial {record.number} ({shown})" if shown else f"trial {record.number}"


def best_line(config: SweepConfig, records: Sequence[TrialRecord], so_far: bool = True) -> str:
    """The best feasible trial, or the Pareto front, in one line."""
    when = " so far" if so_far else ""
    best = best_trials(config, list(records))
    if not best:
        return f"best{when}: none feasible yet" if so_far else "best: no feasible trial"
    if len(config.objectives) == 1:
        o = config.objectives[0]
        return f"best{when} ({o.goal} {o.name}): {describe(config, best[0])}"
    return f"Pareto front{when}: " + "; ".join(describe(config, r) for r in best)


def time_summary(records: Sequence[TrialRecord], wall_s: float) -> str:
    """Wall time of the sweep beside the compute time its trials took (several workers, or a
    resumed study, make them differ)."""
    compute = sum(r.compute_s for r in records)
    return (f"wall time {format_duration(wall_s)}; compute {format_duration(compute)} over "
            f"{len(records)} trial(s)")


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={format_metric(k, v)}" for k, v in params.items())
