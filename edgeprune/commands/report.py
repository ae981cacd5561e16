"""``edgeprune report``: a static HTML page (plots, tables), a CSV and a JSON of a sweep's trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.errors import SweepError, shorten, shown
from pipeline.messages import TrialRecord

from .options import FiniteFloat

#: Where a baseline table is looked for inside a sweep folder when --baselines is not given.
BASELINE_CANDIDATES = ("baseline.json", "baseline/baseline.json")


def read_trial_file(path: Path) -> list[TrialRecord]:
    """TrialRecords from a JSON list (or ``{"trials": [...]}``) or a JSON-lines file."""
    from pipeline.search.storage import check_record

    fix = "pass a sweep folder, a storage URL, or a JSON list of trial records"
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            items = data["trials"] if isinstance(data, dict) else data
    except (ValueError, KeyError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SweepError(f"{path} does not hold trial records ({type(exc).__name__}: "
                         f"{shorten(str(exc))}): {fix}") from None
    if not isinstance(items, list):
        raise SweepError(f"{path}: trial records are a JSON list, got {type(items).__name__}: {fix}")
    return [check_record(item, f"{path} record {i}") for i, item in enumerate(items)]


def _is_records_file(source: str) -> bool:
    path = Path(source)
    return path.is_file() and path.suffix in (".json", ".jsonl")


def _check_named_metrics(trials: list[TrialRecord], named: dict[str, list[str | None]]) -> None:
    """A SweepError for a metric named on the command line that no trial records as a number."""
    from pipeline.report.analysis import metric_value

    present = sorted({m for t in trials for m in t.metrics if metric_value(t, m) is not None})
    for option, names in named.items():
        for name in names:
            if name is not None and not any(metric_value(t, name) is not None for t in trials):
                raise SweepError(f"{option} {shown(name, 80).strip(chr(39))}: no trial has a number "
                                 f"under that name: use one of {', '.join(present) or '(none)'}")


def _default_latency(trials: list[TrialRecord]) -> str:
    """Relative_Latency when a trial has it (the figure a busy machine moves least), else Total_Latency."""
    from pipeline.report.analysis import metric_value

    relative = any(metric_value(t, "Relative_Latency") is not None for t in trials)
    return "Relative_Latency" if relative else "Total_Latency"


def _given(value: str, parameter: str) -> str | None:
    """``value`` when the command line gave it, None for the default (which may be absent)."""
    source = click.get_current_context().get_parameter_source(parameter)
    return value if source is click.core.ParameterSource.COMMANDLINE else None


def load_sweep(source: str, study_name: str | None = None) -> list[TrialRecord]:
    """Trials of a sweep folder or storage URL (through the sweep store), or of a trials JSON file."""
    path = Path(source)
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        return read_trial_file(path)
    from pipeline.search.storage import load_trials

    return load_trials(source, study_name)


#: Latency metrics a sweep may rank by, in the order the report's Pareto axis picks one.
LATENCY_METRICS = ("Latency", "Total_Latency", "Relative_Latency")


def sweep_headline(source: str, study_name: str | None, trials: list[TrialRecord]) -> tuple[Any, str | None]:
    """The report's headline from the sweep's own objective (``Headline``, or None when the trials
    do not come from a stored study) and the latency metric the sweep ranks by (or None)."""
    from pipeline.report import Headline
    from pipeline.search.engine import best_trials
    from pipeline.search.storage import load_sweep_config

    path = Path(source)
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        return None, None
    config = load_sweep_config(source, study_name)
    if config is None or not config.objectives:
        return None, None
    rule = ", ".join([f"{o.goal} {o.name}" for o in config.objectives]
                     + [str(c) for c in config.constraints])
    ranked = config.ranked_metrics
    headline = Headline(rule=rule, numbers=[r.number for r in best_trials(config, trials)],
                        metrics=list(dict.fromkeys(ranked)))
    return headline, next((m for m in ranked if m in LATENCY_METRICS), None)


def _baselines(source: str, study_name: str | None, explicit: Path | None) -> list:
    """The sweep's own references (stored in its study, first: measured like its trials), then
    the rows of a baseline table (--baselines, or one found in the sweep folder)."""
    from pipeline.baseline import load_table
    from pipeline.report import BaselinePoint

    points = []
    if not (Path(source).is_file() and Path(source).suffix in (".json", ".jsonl")):
        from pipeline.search.references import NOTE, display_name, load_references

        references = load_references(source, study_name)
        several = len({r.key for r in references}) > 1
        points = [BaselinePoint(display_name(r, several), r.metrics, r.run_dir, NOTE) for r in references]
    path = explicit
    if path is None and Path(source).is_dir():
        path = next((Path(source) / c for c in BASELINE_CANDIDATES if (Path(source) / c).is_file()),
                    None)
    if path is not None:
        points += [BaselinePoint(row.name, row.metrics, row.run_dir) for row in load_table(path).rows]
    return points


@click.command()
@click.argument("source", metavar="SWEEP_DIR_OR_STORAGE")
@click.option("--study", "study_name", default=None,
              help="Study to report when the storage holds several [default: its only study].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for index.html, the PNG plots, trials.csv and report.json "
                   "[default: SWEEP_DIR/report, or ./report for a storage URL].")
@click.option("--bin-width", default=0.02, show_default=True,
              type=FiniteFloat(min=0, min_open=True, max=1),
              help="Width of the equal-width sparsity bins of the binned-latency plot.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Metric for correlations, importance and best-so-far (repeatable) "
                   "[default: Top1, Relative_Latency, Total_Latency, Latency, Throughput, those "
                   "present].")
@click.option("--latency-metric", default=None,
              help="Latency on the Pareto front's x axis and in the binned plot (Total_Latency: "
                   "end-to-end request, ms; Latency: sum of per-layer times, ms; Relative_Latency: "
                   "against the unpruned network, timed in alternation); every speed-up shown is "
                   "1 / the trial's own Relative_Latency, whatever this is [default: the one the sweep ranks by, else Relative_Latency when "
                   "the trials have it, else Total_Latency].")
@click.option("--accuracy-metric", default="Top1", show_default=True,
              help="Accuracy on the Pareto front's y axis (Top1 is the deployed model's).")
@click.option("--min-top1", "min_accuracy", type=FiniteFloat(0, 100), default=None,
              help="Where the sweep's objective is not stored with the trials (a JSON file): pick "
                   "the best model as the fastest with accuracy >= this (percent); without it "
                   "the most accurate trial. A stored sweep's headline is its own objective.")
@click.option("--baselines", "baselines_path", type=click.Path(path_type=Path), default=None,
              help="baseline.json from `edgeprune baseline` (with fine-tuned rows), marked on the "
                   "Pareto plot beside the unpruned model and hand-picked schedule the sweep "
                   "measured itself (no retraining, stored in its study) [default: "
                   "SWEEP_DIR/baseline.json if any].")
@click.option("--json", "as_json", is_flag=True, help="Print report.json (every figure) to stdout.")
def report(source: str, study_name: str | None, out_dir: Path | None, bin_width: float, metrics: tuple[str, ...],
           latency_metric: str | None, accuracy_metric: str, min_accuracy: float | None,
           baselines_path: Path | None, as_json: bool) -> None:
    """Write an HTML report of a sweep: Pareto front, importance, correlations, binned latency,
    best-so-far, per-layer latency and trial outcomes.

    SWEEP_DIR_OR_STORAGE is an `edgeprune sweep` output folder, its storage URL (sqlite:///...,
    postgresql://...), or a JSON list of trial records.
    """
    from pipeline.report import DEFAULT_METRICS, build_report

    if study_name is not None and _is_records_file(source):
        raise SweepError(f"--study {study_name}: {source} is a file of trial records, not a study "
                         "storage: leave out --study, or pass the sweep folder or storage URL")
    trials = load_sweep(source, study_name)
    if not trials:
        raise SweepError(f"{source} holds no trials: run `edgeprune sweep` into it first")
    _check_named_metrics(trials, {"--metric": list(metrics), "--latency-metric": [latency_metric],
                                  "--accuracy-metric": [_given(accuracy_metric, "accuracy_metric")]})
    out_dir = out_dir or (Path(source) / "report" if Path(source).is_dir() else Path("report"))
    headline, ranked_latency = sweep_headline(source, study_name, trials)
    paths = build_report(trials, out_dir, baselines=_baselines(source, study_name, baselines_path),
                         bin_width=bin_width, metrics=metrics or DEFAULT_METRICS,
                         latency_metric=latency_metric or ranked_latency or _default_latency(trials),
                         accuracy_metric=accuracy_metric, min_accuracy=min_accuracy,
                         headline=headline)
    if as_json:
        click.echo(paths.json.read_text())
    else:
        answer = json.loads(paths.json.read_text())["headline"]
        click.echo(f"{len(trials)} trials; headline ({answer['rule']}): "
                   + (", ".join(f"#{t['number']}" for t in answer["trials"]) or "no feasible trial"))
        click.echo(f"report: {paths.html}\n"
                   f"plots: {', '.join(p.name for p in paths.plots.values())}\n"
                   f"data: {paths.csv}, {paths.json}")
