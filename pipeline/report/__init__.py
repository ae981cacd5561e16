"""Sweep reports: analysis, PNG plots, a static HTML page, a CSV and a JSON of the same figures.

``build_report(trials, out_dir)`` is the one entry point; it reads plain ``TrialRecord`` lists, so
it works on any store that can produce them (local Optuna sweeps, W&B exports, hand-made tables).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.errors import SweepError, shown
from pipeline.files import atomic_write_text
from pipeline.messages import TrialRecord

# plots (matplotlib) is imported in _draw only: a bare install sweeps, and the sweep imports this
# package for its analysis (issue 31).
from . import analysis
from .layers import compare_profiles, load_profile

log = logging.getLogger(__name__)

#: Printed on the page and in report.json beside every accuracy figure.
ACCURACY_NOTE = ("each accuracy is on the split and number of images its trial records (eval_split, "
                 "eval_count): 'val' is held out of the data set's train split, 'test' is its test split")

DEFAULT_METRICS = ("Top1", "Relative_Latency", "Total_Latency", "Latency", "Throughput")

#: Metrics a report computes with: each one a record holds must be a finite number (or null).
NUMERIC_METRICS = frozenset({"Top1", "Top5", "Top1_torch", "Top5_torch", "Top1_before", "Top5_before",
                             "Latency", "Total_Latency", "Relative_Latency", "Throughput", "macs",
                             "params"})

#: What every speed-up of the report is: the trial's own ratio, never two absolute figures.
SPEEDUP_BASIS = ("speed-up = 1 / Relative_Latency: the trial's request time over the unpruned "
                 "network's of the same base, the two timed in alternating windows within the "
                 "trial's own measurement, so a slow period of the machine moves both alike")
NO_RELATIVE = ("no Relative_Latency recorded: no speed-up is claimed from absolute ms taken at "
               "different moments")

#: Importances and correlations from fewer trials than this get a caveat on the page.
MIN_TRIALS_FOR_TRENDS = 20


@dataclass
class Headline:
    """What the sweep itself asked for, and the trial(s) that answer it.

    ``rule`` says it in words ("minimize Latency, Top1 >= 80"); ``numbers`` are the best feasible
    trial, or the feasible Pareto front, as the sweep ranks them (``pipeline.search.best_trials``);
    ``metrics`` are the sweep's objectives and constrained metrics, shown for each.
    """

    rule: str
    numbers: list[int]
    metrics: list[str]


@dataclass
class BaselinePoint:
    """A reference model to mark on the report (unpruned, hand-picked, ...)."""

    name: str
    metrics: dict[str, Any]
    run_dir: str = ""
    #: How it was measured, shown with it (the sweep's own references: no retraining).
    note: str = ""


@dataclass
class ReportPaths:
    """Where a report's files were written."""

    out_dir: Path
    html: Path
    csv: Path
    json: Path
    plots: dict[str, Path] = field(default_factory=dict)


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics as they are; one level of nested dicts as ``outer.inner``; lists dropped."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()
                         if not isinstance(v, (dict, list))})
        elif not isinstance(value, list):
            flat[key] = value
    return flat


def trials_csv(trials: Sequence[TrialRecord]) -> str:
    """All trials as CSV: number, status, reason, timings, then every parameter and metric."""
    params = sorted({p for t in trials for p in t.params})
    flat = [_flat_metrics(t.metrics) for t in trials]
    metrics = sorted({m for f in flat for m in f})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "status", "reason", "compute_s", "started_at", "finished_at",
                     "run_dir"] + params + metrics)
    for trial, values in sorted(zip(trials, flat), key=lambda tv: tv[0].number):
        writer.writerow([trial.number, trial.status, trial.reason, trial.compute_s,
                         trial.started_at, trial.finished_at, trial.run_dir]
                        + [trial.params.get(p, "") for p in params]
                        + [values.get(m, "") for m in metrics])
    return buffer.getvalue()


def check_records(trials: Sequence[TrialRecord], metrics: Sequence[str] = ()) -> None:
    """A SweepError naming the first trial whose ``NUMERIC_METRICS`` or ``metrics`` value is not a
    finite number (NaN, infinite, a string, a bool); null and absent values are fine."""
    names = NUMERIC_METRICS | set(metrics)
    for trial in trials:
        for name in sorted(names & set(trial.metrics)):
            value = trial.metrics[name]
            if value is not None and analysis.metric_value(trial, name) is None:
                raise SweepError(f"trial #{trial.number}: {name}={shown(value)} is not a finite "
                                 "number: fix or drop that record (metrics are numbers, as "
                                 "`edgeprune sweep --json` writes them)")


def _present(trials: Sequence[TrialRecord], metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if any(analysis.metric_value(t, m) is not None for t in trials)]


def analyse(trials: Sequence[TrialRecord], baselines: Sequence[BaselinePoint] = (),
            bin_width: float = 0.02, metrics: Sequence[str] = DEFAULT_METRICS,
            latency_metric: str = "Total_Latency", accuracy_metric: str = "Top1",
            min_accuracy: float | None = None, headline: Headline | None = None) -> dict[str, Any]:
    """Every figure of the report as one JSON-ready dict (what report.json holds)."""
    metrics = _present(trials, metrics)
    numeric = analysis.numeric_params(trials)
    varying = analysis.varying_params(trials)
    sparsities = analysis.sparsity_params(trials)
    importances = {m: analysis.importance(trials, varying, m) for m in metrics}
    best_metric = latency_metric if min_accuracy is not None else accuracy_metric
    best = analysis.best_trial(trials, best_metric, accuracy_metric, min_accuracy)
    marks = _baseline_marks(baselines, latency_metric, accuracy_metric)
    by_number = {t.number: t for t in trials}
    pareto = _pareto_dict(analysis.pareto(trials, latency_metric, accuracy_metric, marks))
    for point in pareto["points"]:
        point.update(_speed(by_number[point["number"]]))
    answer = _headline(trials, headline, best_metric, best, accuracy_metric, min_accuracy,
                       latency_metric)
    # The per-layer section shows the model the headline names, not another "best".
    shown = by_number.get(answer["trials"][0]["number"]) if answer["trials"] else best
    correlations = analysis.to_jsonable(analysis.correlations(trials, numeric, metrics))
    importance = {m: analysis.to_jsonable(i) for m, i in importances.items() if i is not None}
    return {
        "note": ACCURACY_NOTE,
        "trials": len(trials),
        "metrics": list(metrics),
        "params": {"numeric": numeric, "all_varying": varying, "sparsity": sparsities},
        "counts": analysis.status_counts(trials),
        "headline": answer,
        "speedup_basis": SPEEDUP_BASIS,
        "pareto": pareto,
        "correlations": correlations,
        "importance": importance,
        "caveats": _caveats(correlations, importance),
        "importance_estimator": analysis.IMPORTANCE_ESTIMATOR,
        "bins": {"metric": latency_metric, "width": bin_width,
                 "params": analysis.to_jsonable(
                     analysis.binned_metric(trials, sparsities, latency_metric, bin_width))},
        "progress": {m: analysis.to_jsonable(analysis.best_so_far(trials, m)) for m in metrics},
        "best": {"rule": (f"lowest {latency_metric} with {accuracy_metric} >= {min_accuracy}"
                          if min_accuracy is not None else f"highest {accuracy_metric}"),
                 "number": best.number if best else None,
                 "model": analysis.base_model(best) if best else None,
                 "headline": f"best: {analysis.describe(best)} (trial #{best.number})" if best else None,
                 "params": best.params if best else None,
                 "metrics": _flat_metrics(best.metrics) if best else None},
        "per_layer": _per_layer(shown, baselines),
        "baselines": [{"name": b.name, "metrics": _flat_metrics(b.metrics), "note": b.note}
                      for b in baselines],
    }


def _speed(trial: TrialRecord) -> dict[str, Any]:
    """The trial's speed-up over the unpruned network (1 / its own ``Relative_Latency``), the basis
    of that figure, its noise flag (None when steady) and when it was measured."""
    relative = analysis.metric_value(trial, "Relative_Latency")
    flag = trial.metrics.get("measurement_flag")
    if relative is not None and relative > 0:
        reference = (trial.metrics.get("relative_reference_model")
                     or trial.metrics.get("relative_reference") or "the unpruned network")
        basis = f"1 / Relative_Latency against {reference}, timed in alternation"
        speedup: float | None = round(1.0 / relative, 3)
    else:
        basis, speedup = NO_RELATIVE, None
    return {"speedup": speedup, "speedup_basis": basis, "flag": flag if flag else None,
            "measured_at": _when(trial.finished_at)}


def _when(timestamp: float) -> str | None:
    """``timestamp`` as UTC ISO 8601 to the second (None for a record without one)."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _headline(trials: Sequence[TrialRecord], headline: Headline | None, best_metric: str,
              best: TrialRecord | None, accuracy_metric: str, min_accuracy: float | None,
              latency_metric: str) -> dict[str, Any]:
    """The answer at the top of the page: the sweep's own objective when it is known, else the
    report's --min-top1 rule or the most accurate trial (and it says which)."""
    by_number = {t.number: t for t in trials}
    if headline is not None:
        rule, source, chosen = headline.rule, "sweep", [by_number[n] for n in headline.numbers
                                                          if n in by_number]
        shown = list(dict.fromkeys(headline.metrics + [accuracy_metric, latency_metric]))
    else:
        rule = (f"lowest {latency_metric} with {accuracy_metric} >= {min_accuracy}"
                if min_accuracy is not None else f"highest {accuracy_metric}")
        source, chosen = "report", [best] if best is not None else []
        shown = list(dict.fromkeys([best_metric, accuracy_metric, latency_metric]))
    return {"rule": rule, "source": source, "metrics": shown,
            "trials": [{"number": t.number, "params": t.params, "model": analysis.base_model(t),
                        "metrics": {m: analysis.metric_value(t, m) for m in shown}, **_speed(t)}
                       for t in chosen]}


def _caveats(correlations: list[dict[str, Any]], importance: dict[str, Any]) -> dict[str, str]:
    """Why a correlation or an importance should not be trusted yet (few trials)."""
    caveats = {}
    fewest = min((c["n"] for c in correlations), default=None)
    if fewest is not None and fewest < MIN_TRIALS_FOR_TRENDS:
        caveats["correlations"] = (f"computed over as few as {fewest} trials (fewer than "
                                   f"{MIN_TRIALS_FOR_TRENDS}): read them as hints, not findings")
    fewest = min((i["n"] for i in importance.values()), default=None)
    if fewest is not None and fewest < MIN_TRIALS_FOR_TRENDS:
        caveats["importance"] = (f"fitted on as few as {fewest} trials (fewer than "
                                 f"{MIN_TRIALS_FOR_TRENDS}): a random forest on so few points "
                                 "ranks parameters unreliably")
    return caveats


def _pareto_dict(result: analysis.Pareto) -> dict[str, Any]:
    return {"latency_metric": result.latency_metric, "accuracy_metric": result.accuracy_metric,
            "front": [p.number for p in result.front],
            "references_on_front": result.references_on_front,
            "points": analysis.to_jsonable(result.points)}


def _per_layer(best: TrialRecord | None, baselines: Sequence[BaselinePoint]) -> dict[str, Any]:
    """The best trial's per-layer profile beside the unpruned baseline's, or why it is absent."""
    if best is None:
        return {"absent": "no trial has the metric that picks the best model"}
    profile = load_profile(best.metrics, best.run_dir)
    if profile is None:
        return {"absent": f"trial #{best.number} has no per-layer profile in its metrics or run "
                          f"directory ({best.run_dir or 'none recorded'})"}
    reference = next((b for b in baselines if b.name.startswith("unpruned")), None)
    reference_profile = load_profile(reference.metrics, reference.run_dir) if reference else None
    if reference is None or reference_profile is None:
        return {"absent": "no per-layer profile of the unpruned model: pass --baselines "
                          "baseline.json from `edgeprune baseline`", "model": best.number,
                "model_profile": profile}
    rows = compare_profiles(profile, reference_profile)
    return {"model": best.number, "reference": reference.name,
            "model_total_ms": sum(profile.values()),
            "reference_total_ms": sum(reference_profile.values()),
            "rows": analysis.to_jsonable(rows)}


def _baseline_marks(baselines: Sequence[BaselinePoint], latency_metric: str,
                    accuracy_metric: str) -> dict[str, tuple[float, float]]:
    marks = {}
    for b in baselines:
        x, y = b.metrics.get(latency_metric), b.metrics.get(accuracy_metric)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            marks[b.name] = (float(x), float(y))
    return marks


def _draw(report: dict[str, Any], trials: Sequence[TrialRecord],
          baselines: Sequence[BaselinePoint], out_dir: Path) -> dict[str, Path]:
    """Draw every figure the report has data for; returns name -> PNG path."""
    from . import plots

    marks = _baseline_marks(baselines, report["pareto"]["latency_metric"],
                            report["pareto"]["accuracy_metric"])
    pareto = analysis.pareto(trials, report["pareto"]["latency_metric"],
                             report["pareto"]["accuracy_metric"], marks)
    # A chart with nothing to show (no point, no bar above zero) is left out, not drawn empty.
    drawn: dict[str, Path] = {}
    if pareto.points:
        drawn["pareto"] = plots.plot_pareto(
            pareto, out_dir / "pareto.png",
            marks,
            note="accuracy on the split each trial records")
    counts = {s: n for s, n in report["counts"].items() if n}
    if len(counts) > 2:  # "total" and one status: the table says it all
        drawn["counts"] = plots.plot_counts(counts, out_dir / "counts.png")
    if report["importance"]:
        drawn["importance"] = plots.plot_importance(
            [analysis.Importance(**i) for i in report["importance"].values()],
            out_dir / "importance.png")
    bins = {p: [analysis.Bin(**b) for b in param_bins]
            for p, param_bins in report["bins"]["params"].items() if param_bins}
    if bins:
        drawn["bins"] = plots.plot_bins(bins, report["bins"]["metric"], report["bins"]["width"],
                                        out_dir / "binned_latency.png")
    progress = {m: [analysis.ProgressPoint(**p) for p in points]
                for m, points in report["progress"].items() if points}
    if progress:
        drawn["progress"] = plots.plot_progress(progress, out_dir / "progress.png")
    if report["correlations"]:
        table = [analysis.Correlation(**c) for c in report["correlations"]]
        drawn["pearson"] = plots.plot_correlations(table, out_dir / "pearson.png", "pearson")
        drawn["spearman"] = plots.plot_correlations(table, out_dir / "spearman.png", "spearman")
    layers = report["per_layer"]
    if "rows" in layers:
        from .layers import LayerRow

        drawn["per_layer"] = plots.plot_layers(
            [LayerRow(**r) for r in layers["rows"]], out_dir / "per_layer.png",
            f"trial #{layers['model']}", layers["reference"])
    return drawn


def build_report(trials: Sequence[TrialRecord], out_dir: Path,
                 baselines: Sequence[BaselinePoint] | None = None, bin_width: float = 0.02,
                 metrics: Sequence[str] = DEFAULT_METRICS, latency_metric: str = "Total_Latency",
                 accuracy_metric: str = "Top1", min_accuracy: float | None = None,
                 title: str = "edgeprune sweep report", headline: Headline | None = None) -> ReportPaths:
    """Write index.html, trials.csv, report.json and the PNG plots into ``out_dir``.

    Records with a metric that is not a finite number raise a SweepError before anything is
    written; a failure while writing removes what this call wrote (``out_dir`` too, when it made it).
    """
    from .page import render_page

    out_dir = Path(out_dir)
    baselines = list(baselines or ())
    check_records(trials, [*metrics, latency_metric, accuracy_metric])
    report = analyse(trials, baselines, bin_width, metrics, latency_metric, accuracy_metric,
                     min_accuracy, headline)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)  # first: a file in the way is its own error
    before = set() if created else set(out_dir.iterdir())
    try:
        drawn = _draw(report, trials, baselines, out_dir)
        report["files"] = {name: path.name for name, path in drawn.items()}
        paths = ReportPaths(out_dir=out_dir, html=out_dir / "index.html", csv=out_dir / "trials.csv",
                            json=out_dir / "report.json", plots=drawn)
        atomic_write_text(paths.csv, trials_csv(trials))
        atomic_write_text(paths.json, json.dumps(report, indent=2, sort_keys=True, default=str))
        atomic_write_text(paths.html, render_page(report, drawn, out_dir, title))
    except BaseException:
        _remove_new(out_dir, before, created)
        raise
    log.info("report written to %s", paths.html)
    return paths


def _remove_new(out_dir: Path, before: set[Path], created: bool) -> None:
    """Remove the files a failed ``build_report`` left in ``out_dir`` (a half report misleads)."""
    for path in set(out_dir.iterdir()) - before:
        path.unlink(missing_ok=True)
    if created:
        out_dir.rmdir()


__all__ = ["ACCURACY_NOTE", "MIN_TRIALS_FOR_TRENDS", "BaselinePoint", "Headline", "ReportPaths", "analyse", "build_report", "check_records", "trials_csv"]
