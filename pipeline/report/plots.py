"""PNG figures of a sweep report, drawn with matplotlib's Agg backend (no display needed).

Every function takes analysis results (pipeline.report.analysis) and a path, draws one figure,
writes it atomically and returns the path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.extras import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Agg before pyplot is imported: reports are drawn on machines without a display.
require("matplotlib").use("Agg")
plt = require("matplotlib.pyplot")

from ..files import atomic_output
from ..status import TrialStatus
from .analysis import Bin, Correlation, Importance, Pareto, ProgressPoint, is_maximised
from .layers import LayerRow

#: Colour of each trial status, shared by every figure.
STATUS_COLOURS: dict[str, str] = {TrialStatus.OK: "#1f77b4", TrialStatus.EARLY_STOPPED: "#9467bd",
                                  TrialStatus.GATED: "#7f7f7f", TrialStatus.COLLAPSED: "#d62728",
                                  TrialStatus.FAILED: "#000000", TrialStatus.RUNNING: "#bcbd22",
                                  TrialStatus.RAPID: "#c7c7c7"}
FRONT_COLOUR = "#ff7f0e"
DPI = 110


@contextmanager
def _figure(path: Path, width: float, height: float) -> Iterator[Figure]:
    """A fresh figure, saved to ``path`` through a temporary file and closed afterwards."""
    fig = plt.figure(figsize=(width, height))
    try:
        yield fig
        fig.tight_layout()
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def _grid(count: int, columns: int = 2) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def _short(name: str, limit: int = 40) -> str:
    """``name`` whole, wrapped onto lines of at most ``limit`` characters: a label is never cut."""
    return "\n".join(name[i:i + limit] for i in range(0, len(name), limit)) or name


def plot_pareto(result: Pareto, path: Path,
                baselines: Mapping[str, tuple[float, float]] | None = None, note: str = "") -> Path:
    """Accuracy against latency: every trial by status, the front as a step line, baselines starred."""
    baselines = baselines or {}
    with _figure(path, 8, 5.5) as fig:
        ax = fig.add_subplot()
        for status, colour in STATUS_COLOURS.items():
            points = [p for p in result.points if p.status == status]
            if points:
                ax.scatter([p.latency for p in points], [p.accuracy for p in points], s=22,
                           color=colour, alpha=0.6, label=f"{str(status)} ({len(points)})")
        front = result.front
        if front:
            ax.step([p.latency for p in front], [p.accuracy for p in front], where="post",
                    color=FRONT_COLOUR, linewidth=1.5)
            ax.scatter([p.latency for p in front], [p.accuracy for p in front], s=60,
                       facecolors="none", edgecolors=FRONT_COLOUR, linewidths=1.8,
                       label=f"Pareto front ({len(front)})")
            for p in front:
                ax.annotate(f"#{p.number}", (p.latency, p.accuracy), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        markers = iter("*PXD^v")
        for name, (latency, accuracy) in baselines.items():
            ax.scatter([latency], [accuracy], marker=next(markers, "o"), s=160, color="#2ca02c",
                       edgecolors="black", zorder=5, label=name)
        unit = "x unpruned" if result.latency_metric == "Relative_Latency" else "ms"
        ax.set_xlabel(f"{result.latency_metric} ({unit}, lower is better)")
        ax.set_ylabel(f"{result.accuracy_metric} (%, higher is better)")
        ax.set_title(f"{result.accuracy_metric} vs {result.latency_metric}"
                     + (f"\n{note}" if note else ""), fontsize=10)
        ax.grid(alpha=0.3)
        if result.points or baselines:
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no trial has both metrics", ha="center", transform=ax.transAxes)
    return path


def plot_importance(importances: Sequence[Importance], path: Path) -> Path:
    """One horizontal bar chart of random-forest importance per metric."""
    rows, columns = _grid(max(1, len(importances)))
    height = max(3.0, 0.35 * max((len(i.values) for i in importances), default=4) + 1.5)
    with _figure(path, 6 * columns, height * rows) as fig:
        if not importances:
            fig.text(0.5, 0.5, "too few trials for importance", ha="center")
        for k, item in enumerate(importances):
            ax = fig.add_subplot(rows, columns, k + 1)
            ordered = sorted(item.values.items(), key=lambda kv: kv[1])
            ax.barh([_short(n) for n, _ in ordered], [v for _, v in ordered], color="#1f77b4")
            ax.set_xlabel("importance (mean decrease in impurity)")
            ax.set_title(f"{item.metric} ({item.n} trials)", fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
    return path


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def plot_correlations(table: Sequence[Correlation], path: Path, kind: str = "pearson") -> Path:
    """Heat map of one correlation coefficient, parameter rows by metric columns, values written in."""
    params = list(dict.fromkeys(c.param for c in table))
    metrics = list(dict.fromkeys(c.metric for c in table))
    values = {(c.param, c.metric): getattr(c, kind) for c in table}
    with _figure(path, 1.6 * max(3, len(metrics)) + 3, 0.45 * max(3, len(params)) + 1.5) as fig:
        ax = fig.add_subplot()
        grid = [[_or_nan(values.get((p, m))) for m in metrics] for p in params] or [[math.nan]]
        image = ax.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
        for i, p in enumerate(params):
            for j, m in enumerate(metrics):
                value = values.get((p, m))
                ax.text(j, i, "—" if value is None else f"{value:+.2f}", ha="center",
                        va="center", fontsize=8)
        ax.set_xticks(range(len(metrics)), metrics, fontsize=8)
        ax.set_yticks(range(len(params)), [_short(p) for p in params], fontsize=8)
        ax.set_title(f"{kind.capitalize()} correlation of parameters with metrics", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return path


def plot_bins(bins: Mapping[str, Sequence[Bin]], metric: str, width: float, path: Path) -> Path:
    """Mean ``metric`` per equal-width bin of each sparsity parameter (the seed's Figure 1)."""
    rows, columns = _grid(max(1, len(bins)))
    with _figure(path, 6 * columns, 3.6 * rows) as fig:
        if not bins:
            fig.text(0.5, 0.5, f"no sparsity parameter with {metric}", ha="center")
        for k, (param, param_bins) in enumerate(bins.items()):
            ax = fig.add_subplot(rows, columns, k + 1)
            ax.bar([b.low for b in param_bins], [b.mean for b in param_bins], width=width * 0.9,
                   align="edge", color="#1f77b4")
            for b in param_bins:
                ax.annotate(str(b.count), (b.low + width / 2, b.mean), ha="center", fontsize=6,
                            xytext=(0, 2), textcoords="offset points")
            ax.set_xlabel(f"{_short(param, 40)} (bin width {width:g})", fontsize=8)
            ax.set_ylabel(f"mean {metric} ({'x unpruned' if metric == 'Relative_Latency' else 'ms'})")
            low = min(b.mean for b in param_bins)
            high = max(b.mean for b in param_bins)
            ax.set_ylim(low - 0.1 * (high - low + 1e-9) - 0.02 * abs(low), high * 1.02 + 1e-9)
            ax.grid(axis="y", alpha=0.3)
    return path


def plot_progress(progress: Mapping[str, Sequence[ProgressPoint]], path: Path) -> Path:
    """Best-so-far of each metric against trial number, and cumulative compute time."""
    panels = len(progress) + 1
    rows, columns = _grid(panels)
    with _figure(path, 6 * columns, 3.4 * rows) as fig:
        for k, (metric, points) in enumerate(progress.items()):
            ax = fig.add_subplot(rows, columns, k + 1)
            measured = [(p.number, p.value) for p in points if p.value is not None]
            ax.scatter([n for n, _ in measured], [v for _, v in measured], s=12,
                       color="#7f7f7f", alpha=0.6, label="trial")
            best = [(p.number, p.best) for p in points if p.best is not None]
            ax.step([n for n, _ in best], [b for _, b in best], where="post",
                    color=FRONT_COLOUR, label="best so far")
            goal = "max" if is_maximised(metric) else "min"
            ax.set_title(f"{metric} ({goal}imised)", fontsize=10)
            ax.set_xlabel("trial number")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax = fig.add_subplot(rows, columns, panels)
        points = next(iter(progress.values()), [])
        ax.plot([p.number for p in points], [p.cumulative_compute_s / 60 for p in points],
                color="#2ca02c", marker=".")
        ax.set_title("cumulative compute time", fontsize=10)
        ax.set_xlabel("trial number")
        ax.set_ylabel("minutes")
        ax.grid(alpha=0.3)
    return path


def plot_layers(rows: Sequence[LayerRow], path: Path, model_label: str,
                reference_label: str) -> Path:
    """Per-layer latency of one model beside a reference model, as paired horizontal bars."""
    with _figure(path, 9, 0.22 * max(10, len(rows)) + 1.5) as fig:
        ax = fig.add_subplot()
        positions = range(len(rows))
        ax.barh([y + 0.2 for y in positions], [r.reference_ms or 0.0 for r in rows], height=0.4,
                color="#7f7f7f", label=reference_label)
        ax.barh([y - 0.2 for y in positions], [r.model_ms or 0.0 for r in rows], height=0.4,
                color=FRONT_COLOUR, label=model_label)
        ax.set_yticks(list(positions), [_short(r.name, 36) for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("time per inference (ms)")
        ax.set_title("per-layer latency", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    return path


def plot_counts(counts: Mapping[str, int], path: Path) -> Path:
    """Trials per status as a bar chart."""
    shown = [(s, n) for s, n in counts.items() if s != "total"]
    with _figure(path, 6, 3) as fig:
        ax = fig.add_subplot()
        bars = ax.bar([s for s, _ in shown], [n for _, n in shown],
                      color=[STATUS_COLOURS.get(s, "#1f77b4") for s, _ in shown])
        ax.bar_label(bars, fontsize=8)
        ax.set_ylabel("trials")
        ax.set_title(f"trial outcomes ({counts.get('total', 0)} trials)", fontsize=10)
    return path
