"""Per-layer pruning sensitivity: prune one conv alone at each level, measure accuracy and latency.

What Distiller's ``--sense`` did (Li et al. 2017, figure 2), extended with the measured latency of
each pruned architecture, so the table says both what a layer costs in accuracy and what removing
its structures buys on the target engine. Each (layer, level) is pruned on a fresh copy of the
model with the structured pruner of the schedule format (torch-pruning removes the structures and
their dependants), evaluated on the validation split, and optionally measured.

Results go to a CSV, one row per (layer, level), rewritten atomically after every row: an
interrupted run resumes where it stopped, and a run with latency added later measures only what
is missing.
"""

from __future__ import annotations

import copy
import csv
import fnmatch
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .errors import ScheduleError, UserError
from .extras import require
from .files import atomic_output
from .pruning.importance import STRUCTURE_DIM
from .pruning.sparsity import weight_shapes
from .schedule import Policy, PrunerSpec, Schedule

if TYPE_CHECKING:
    from .data import Split
    from .messages import Target

log = logging.getLogger(__name__)

#: (model) -> (top1, top5) in percent.
EvaluateFn = Callable[[nn.Module], tuple[float, float]]
#: (pruned model) -> latency in milliseconds.
LatencyFn = Callable[[nn.Module], float]


@dataclass
class SensitivityRow:
    """Accuracy and latency of the model with one layer pruned to one level."""

    layer: str
    level: float
    top1: float | None = None
    top5: float | None = None
    latency_ms: float | None = None
    #: Filters (group_type Filters) or input channels (Channels) the layer keeps.
    channels_kept: int | None = None

    def done(self, want_latency: bool) -> bool:
        """Whether a rerun can skip this row."""
        return self.top1 is not None and (not want_latency or self.latency_ms is not None)


CSV_FIELDS = tuple(f.name for f in fields(SensitivityRow))


def parse_levels(text: str) -> list[float]:
    """``"0.1,0.2,0.5"`` -> sorted unique levels in [0, 1); anything else is a UserError."""
    try:
        levels = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--levels {text!r} is not a comma-separated list of numbers: "
                        "use e.g. 0.1,0.2,0.3") from None
    if not levels or any(not 0 <= level < 1 for level in levels):
        raise UserError(f"--levels {text!r} must hold fractions in [0, 1): use e.g. 0.1,0.2,0.3")
    return levels


def sensitivity_schedule(weight: str, level: float, group_type: str, criterion: str | None = None) -> Schedule:
    """A one-pruner schedule that removes ``level`` of ``weight``'s structures at epoch 0.

    Built as data; ``validate_schedule`` checks its fields as the reader would (a bad criterion
    is the same ScheduleError).
    """
    args = {"group_type": group_type, "desired_sparsity": float(level), "weights": [weight]}
    if criterion:
        args["criterion"] = criterion
    pruner = PrunerSpec("sensitivity", "L1RankedStructureParameterPruner", args)
    return Schedule(1, {pruner.name: pruner}, {}, {}, [Policy("pruner", pruner.name, listed_epochs=(0,))],
                    source=f"sensitivity schedule of {weight}")


#: Group type of whole residual blocks: each is removed alone (level 1) or kept (level 0).
BLOCKS = "Blocks"
BLOCK_LEVELS = (0.0, 1.0)


def prune_layer(model: nn.Module, weight: str, level: float, group_type: str,
                criterion: str | None = None) -> int:
    """Prune ``level`` of ``weight``'s structures in place; return how many it keeps.

    For ``Blocks``, ``weight`` names a residual block, removed at any level above 0 (kept: 0 or 1).
    """
    from .pruning import prune_one_shot, validate_schedule
    from .pruning.blocks import remove_blocks

    if group_type == BLOCKS:
        if level > 0:
            remove_blocks(model, [weight])
        return 0 if level > 0 else 1
    if level > 0:
        schedule = sensitivity_schedule(weight, level, group_type, criterion)
        validate_schedule(schedule, model)
        device = next(model.parameters()).device
        prune_one_shot(model, schedule, torch.zeros(1, 3, 32, 32, device=device))
    return weight_shapes(model)[weight][STRUCTURE_DIM[group_type]]


def candidate_layers(model: nn.Module, group_type: str, pattern: str = "*",
                     criterion: str | None = None) -> list[str]:
    """Conv weights matching the glob ``pattern`` that the structured pruner accepts alone.

    The schedule validator decides (e.g. it refuses filters that feed an option-A residual sum);
    refused layers are logged and left out.
    """
    from .pruning import validate_schedule
    from .pruning.blocks import identity_blocks

    if group_type == BLOCKS:
        blocks = [b for b in identity_blocks(model) if fnmatch.fnmatchcase(b, pattern)
                  or fnmatch.fnmatchcase(f"module.{b}", pattern)]
        if not blocks:
            raise UserError(f"--layers {pattern!r} matches no removable residual block: use a glob "
                            "such as 'layer2.*' (blocks with an identity shortcut)")
        return blocks
    names = [name for name, shape in weight_shapes(model).items() if len(shape) == 4]
    matching = [name for name in names if fnmatch.fnmatchcase(name, pattern)
                or fnmatch.fnmatchcase(f"module.{name}", pattern)]
    if not matching:
        raise UserError(f"--layers {pattern!r} matches no conv weight: use a glob such as "
                        f"'layer1.*.conv1.weight' (names like {names[1]})")
    accepted = []
    for name in matching:
        try:
            validate_schedule(sensitivity_schedule(name, 0.5, group_type, criterion), model)
        except ScheduleError as exc:
            log.info("skipping %s: %s", name, exc)
            continue
        accepted.append(name)
    if not accepted:
        raise UserError(f"--layers {pattern!r}: the structured pruner refuses every matching conv for "
                        f"group type {group_type}: pick other layers or the other --group-type")
    return accepted


def read_rows(csv_path: Path) -> dict[tuple[str, float], SensitivityRow]:
    """Rows of an earlier run, by (layer, level); an absent file gives none."""
    if not csv_path.is_file():
        return {}
    rows = {}
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise UserError(f"{csv_path} is not a sensitivity CSV (columns {reader.fieldnames}): "
                            "pass another --out folder or delete the file")
        for raw in reader:
            row = SensitivityRow(
                layer=raw["layer"], level=float(raw["level"]),
                top1=_number(raw["top1"]), top5=_number(raw["top5"]),
                latency_ms=_number(raw["latency_ms"]),
                channels_kept=None if raw["channels_kept"] == "" else int(raw["channels_kept"]))
            rows[(row.layer, row.level)] = row
    return rows


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def write_rows(csv_path: Path, rows: Iterable[SensitivityRow]) -> None:
    """Write every row to ``csv_path`` atomically (temp file, then rename)."""
    with atomic_output(csv_path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.layer, r.level)):
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})


def cached_by_architecture(latency_fn: LatencyFn) -> LatencyFn:
    """Measure each distinct architecture once: latency depends on shapes, not on weight values."""
    cache: dict[tuple, float] = {}

    def measure(model: nn.Module) -> float:
        key = tuple(sorted(weight_shapes(model).items()))
        if key not in cache:
            cache[key] = latency_fn(model)
        return cache[key]

    return measure


def accuracy_on(split: "Split", batch_size: int = 250, device: str = "cpu") -> EvaluateFn:
    """An EvaluateFn: Top1/Top5 of a model on ``split`` (pipeline.training.evaluate)."""
    from .training import evaluate

    def accuracy(model: nn.Module) -> tuple[float, float]:
        result = evaluate(model, split, batch_size=batch_size, device=device)
        return result.top1, result.top5

    return accuracy


def openvino_latency(target: "Target | None" = None, iters: int = 200) -> LatencyFn:
    """A LatencyFn: export the model to ONNX in a temp folder and measure ``Latency`` on ``target``.

    ``Latency`` is the sum of the engine's per-layer times for one inference (the metric sweeps
    optimise); the end-to-end median stands in when the engine gives no profile. ``iters`` timed
    inferences (at least 0.5 s), no throughput run: short, since a sweep re-measures the winners.
    Each distinct architecture is measured once.
    """
    from .export import export_onnx
    from .measure import MeasureOptions, measure
    from .messages import Target

    if iters < 1:
        raise UserError(f"latency iterations {iters} must be at least 1: use e.g. 200")
    target = target or Target()
    options = MeasureOptions(warmup=min(20, iters), min_iters=iters, min_time_s=0.5, throughput=False,
                             profile_repeats=min(20, iters))

    def latency(model: nn.Module) -> float:
        with tempfile.TemporaryDirectory(prefix="edgeprune-sense-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(copy.deepcopy(model).cpu().eval(), path)
            result = measure(path, target, options=options)
        return result.layer_latency_ms if result.layer_latency_ms is not None else result.latency.quiet_median

    return cached_by_architecture(latency)


def run_sensitivity(model: nn.Module, layers: Sequence[str], levels: Sequence[float], group_type: str,
                    csv_path: Path, evaluate_fn: EvaluateFn, latency_fn: LatencyFn | None = None,
                    criterion: str | None = None) -> list[SensitivityRow]:
    """Prune each layer alone at each level on a copy of ``model``; record rows in ``csv_path``.

    Rows already complete in the CSV are skipped; rows lacking only latency are pruned again and
    measured without re-evaluating. Level 0 is the unpruned model (evaluated once).
    """
    if group_type not in (*STRUCTURE_DIM, BLOCKS):
        raise UserError(f"group type {group_type!r} is not supported: use Filters, Channels or Blocks")
    rows = read_rows(csv_path)
    want_latency = latency_fn is not None
    todo = [(layer, level) for layer in layers for level in levels
            if not (rows.get((layer, level)) or SensitivityRow(layer, level)).done(want_latency)]
    log.info("sensitivity: %d of %d rows to do (%d already in %s)",
             len(todo), len(layers) * len(levels), len(layers) * len(levels) - len(todo), csv_path)
    baseline: SensitivityRow | None = None
    for layer, level in tqdm(todo, desc="sensitivity", unit="row", disable=None):
        row = rows.get((layer, level)) or SensitivityRow(layer, level)
        pruned = copy.deepcopy(model)
        row.channels_kept = prune_layer(pruned, layer, level, group_type, criterion)
        pruned.eval()
        if row.top1 is None:
            if level == 0 and baseline is not None:
                row.top1, row.top5 = baseline.top1, baseline.top5
            else:
                row.top1, row.top5 = evaluate_fn(pruned)
        if level == 0:
            baseline = row
        if latency_fn is not None and row.latency_ms is None:
            row.latency_ms = round(latency_fn(pruned), 4)
        rows[(layer, level)] = row
        write_rows(csv_path, rows.values())
    return [rows[(layer, level)] for layer in layers for level in levels]


def plot_sensitivity(rows: Sequence[SensitivityRow], png_path: Path, group_type: str = "Filters",
                     title: str = "") -> Path:
    """One line per layer: validation Top1 against the pruning level; written atomically."""
    require("matplotlib").use("Agg")
    plt = require("matplotlib.pyplot")

    by_layer: dict[str, list[SensitivityRow]] = {}
    for row in rows:
        if row.top1 is not None:
            by_layer.setdefault(row.layer, []).append(row)
    fig, ax = plt.subplots(figsize=(9, 6))
    try:
        for layer, layer_rows in by_layer.items():
            layer_rows.sort(key=lambda r: r.level)
            ax.plot([r.level for r in layer_rows], [r.top1 for r in layer_rows], marker="o",
                    label=layer.removesuffix(".weight"))
        ax.set_xlabel(f"fraction of {group_type.lower()} removed")
        ax.set_ylabel("validation Top1 (%)")
        ax.set_title(title or f"Pruning sensitivity ({group_type}, one layer at a time)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", ncol=max(1, math.ceil(len(by_layer) / 14)), loc="lower left")
        with atomic_output(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png_path



def format_rows(rows: Sequence[SensitivityRow]) -> str:
    """A text table: one line per layer, validation Top1 (and latency ms) at each level."""
    levels = sorted({r.level for r in rows})
    by_key = {(r.layer, r.level): r for r in rows}
    layers = list(dict.fromkeys(r.layer for r in rows))
    width = max([len("layer"), *(len(layer) for layer in layers)])
    lines = [f"{'layer':<{width}}  " + "  ".join(f"{level:>13.2f}" for level in levels),
             f"{'':<{width}}  " + "  ".join(f"{'top1% / ms':>13}" for _ in levels)]
    for layer in layers:
        cells = []
        for level in levels:
            row = by_key.get((layer, level))
            top1 = "-" if row is None or row.top1 is None else f"{row.top1:.1f}"
            ms = "-" if row is None or row.latency_ms is None else f"{row.latency_ms:.3f}"
            cells.append(f"{top1 + ' / ' + ms:>13}")
        lines.append(f"{layer:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
