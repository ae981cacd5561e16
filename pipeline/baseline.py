"""The baseline table: the unpruned model against a hand-picked schedule, measured on this machine.

Rows (the seed's table, plus a fair comparison): the unpruned model; the hand-picked schedule
without retraining; and with ``epochs`` > 0, the hand-picked schedule retrained for that many
epochs and the unpruned model fine-tuned for the same epochs (so retraining alone is not mistaken
for a gain of pruning). Every row is a ``pipeline.trial.run_trial`` on the in-process queue
(produce, submit, measure), exactly like a sweep trial without ``--redis``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError
from .files import atomic_write_text
from .measure.noise import flag_cell
from .messages import Target
from .status import TrialStatus

log = logging.getLogger(__name__)

#: A schedule that prunes nothing: the unpruned rows go through the same flow as the pruned ones.
UNPRUNED_SCHEDULE = "version: 1\npruners: {}\npolicies: []\n"


#: (column title, metric name, format) of the printed table, in the seed's order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Top1 torch", "Top1_torch", ".2f"),
    ("Top5 torch", "Top5_torch", ".2f"),
    ("Top1 deployed", "Top1", ".2f"),
    ("Top5 deployed", "Top5", ".2f"),
    ("Throughput (img/s)", "Throughput", ".1f"),
    ("Latency (ms)", "Latency", ".3f"),
    ("Total_Latency (ms)", "Total_Latency", ".3f"),
    ("MACs", "macs", ","),
    ("Params", "params", ","),
    ("ONNX size (bytes)", "onnx_bytes", ","),
)


@dataclass
class BaselineSpec:
    """One row to produce: which schedule and how many retraining epochs."""

    name: str
    pruned: bool
    epochs: int


def baseline_specs(epochs: int) -> list[BaselineSpec]:
    """The rows of the table for ``epochs`` retraining epochs (two rows when 0, four otherwise)."""
    specs = [BaselineSpec("unpruned", False, 0), BaselineSpec("hand-picked", True, 0)]
    if epochs > 0:
        specs += [BaselineSpec(f"hand-picked + {epochs} ep", True, epochs),
                  BaselineSpec(f"unpruned + {epochs} ep", False, epochs)]
    return specs


@dataclass
class BaselineRow:
    name: str
    pruned: bool
    epochs: int
    status: str
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""
    seconds: float = 0.0


@dataclass
class BaselineTable:
    """Every row with its metrics, and what they were measured with."""

    model: str
    schedule: str
    epochs: int
    target: dict[str, Any]
    rows: list[BaselineRow]
    #: Which images every row's Top1/Top5 were measured on (``pipeline.data.measured_on``).
    note: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineTable:
        rows = [BaselineRow(**row) for row in data["rows"]]
        return cls(**{**data, "rows": rows})

    def to_markdown(self) -> str:
        """A Markdown table of the figures, followed by what they were measured with."""
        header = ["model"] + [title for title, _, _ in COLUMNS] + ["timing"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [row.name] + [_format(row.metrics.get(metric), spec)
                                  for _, metric, spec in COLUMNS] + [flag_cell(row.metrics)]
            if row.status != TrialStatus.OK:
                cells[0] += f" ({row.status})"
            lines.append("| " + " | ".join(cells) + " |")
        device = next((r.metrics.get("device_name") for r in self.rows if r.metrics.get("device_name")), "")
        precision = next((r.metrics.get("precision") for r in self.rows if r.metrics.get("precision")),
                         self.target.get("precision", ""))
        lines += ["", (f"{self.model}, schedule {self.schedule}, {self.target.get('backend')} "
                       f"{self.target.get('device')} {device}, precision {precision}."),
                  f"Top1/Top5 on {self.note}." if self.note else ""]
        return "\n".join(lines)


def _format(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def save_table(table: BaselineTable, out_dir: Path) -> tuple[Path, Path]:
    """Write ``baseline.md`` and ``baseline.json`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, data = out_dir / "baseline.md", out_dir / "baseline.json"
    atomic_write_text(markdown, table.to_markdown() + "\n")
    atomic_write_text(data, json.dumps(table.to_dict(), indent=2, default=str))
    return markdown, data


def load_table(path: Path) -> BaselineTable:
    """Read a ``baseline.json`` (or the folder holding one) written by :func:`save_table`."""
    path = Path(path)
    if path.is_dir():
        path = path / "baseline.json"
    try:
        table = BaselineTable.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(f"baseline file {path} not found: run `edgeprune baseline --out DIR` "
                        "and pass DIR/baseline.json") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a baseline table ({exc}): pass the baseline.json "
                        "written by `edgeprune baseline`") from None
    for row in table.rows:
        # Run folders are stored relative to the table, so the folder can be moved whole.
        if row.run_dir and not Path(row.run_dir).is_absolute():
            row.run_dir = str(path.parent / row.run_dir)
    return table


RowFn = Callable[[BaselineRow], None]


def _recovery_for(spec: BaselineSpec, recovery: Mapping[str, Any]) -> dict[str, Any]:
    """The recovery settings of one row. Pruned rows take them all. Unpruned rows take none of
    distillation (the unpruned fine-tuned row is what the default teacher is) and no adaptive BN:
    their statistics come from the whole train split, and re-estimating them on a few hundred
    images only makes them worse (docs/results.md, 2026-12-08)."""
    if spec.pruned:
        return dict(recovery)
    kept = {k: v for k, v in recovery.items() if not k.startswith("kd_")}
    kept["bn_recalibrate"] = 0
    return kept


def run_baselines(settings: Any, out_dir: Path, model: str = "resnet56_cifar",
                  schedule: Path | str = Path("schedules/resnet56_filter_rank.yaml"),
                  epochs: int = 0, target: Target | None = None, lr: float = 0.01,
                  batch_size: int = 128, max_steps_per_epoch: int | None = None,
                  subset: int | None = None, eval_split: str = "test", eval_subset: int = 0,
                  measure_options: Any = None, specs: Sequence[BaselineSpec] | None = None,
                  on_row: RowFn | None = None, recovery: Mapping[str, Any] | None = None) -> BaselineTable:
    """Produce and measure every baseline row through ``run_trial``; rows land in ``out_dir/<n>-<name>``
    (recorded relative to ``out_dir``).

    ``measure_options`` (a ``pipeline.measure.options.MeasureOptions``) defaults to the standard
    settings with per-layer profiles kept, so reports can compare layers against the unpruned model.
    Each row's ``result.json`` flags a deployed Top1 more than 0.5 points off PyTorch's
    (``accuracy_gap_flagged``, ``pipeline.flow.result_record``).
    ``recovery`` holds ``RunConfig``'s ``bn_recalibrate``/``kd_*``/``lr_anneal`` fields; distillation and
    adaptive BN apply to the pruned rows only (``_recovery_for``).
    """
    from .flow import RunConfig, measure_work
    from .measure.options import MeasureOptions
    from .queue import NO_WAIT_S, open_queue
    from .trial import run_trial

    target = target or Target()
    rows = []
    with open_queue(None, measure_work(settings, measure_options or MeasureOptions()), target) as queue:
        for index, spec in enumerate(specs or baseline_specs(epochs)):
            run_dir = out_dir / f"{index}-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', spec.name)}"
            config = RunConfig(schedule=schedule if spec.pruned else UNPRUNED_SCHEDULE, model=model,
                               epochs=spec.epochs, lr=lr, batch_size=batch_size,
                               max_steps_per_epoch=max_steps_per_epoch, subset=subset,
                               eval_split=eval_split, eval_subset=eval_subset, target=target,
                               retrain_collapsed=True, torch_eval=True, params={"baseline": spec.name},
                               **_recovery_for(spec, recovery or {}))
            start = time.perf_counter()
            log.info("baseline row %s: %s, %d epochs", spec.name, config.schedule, spec.epochs)
            done = run_trial(config, queue, settings, run_dir, timeout=NO_WAIT_S)
            row = BaselineRow(spec.name, spec.pruned, spec.epochs, done.status, done.reason,
                              done.metrics(), run_dir.name, time.perf_counter() - start)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    from .data import measured_on

    count = next((r.metrics.get("eval_count") for r in rows if r.metrics.get("eval_count")), None)
    return BaselineTable(model=model, schedule=str(schedule), epochs=epochs, target=target.to_dict(),
                         rows=rows, note=measured_on(settings.data_path, eval_split, count))
