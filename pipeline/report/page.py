"""The report's HTML page: one section per analysis, laid out from report.json's content."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..measure.stats import QUIET_WINDOW
from .html import image, page, paragraph, section, table


def _img(drawn: Mapping[str, Path], name: str, out_dir: Path, alt: str) -> str:
    return image(drawn[name], out_dir, alt) if name in drawn else ""


def _with_unit(metric: str) -> str:
    if metric.startswith(("Top1", "Top5")):
        return f"{metric} (%)"
    if metric == "Relative_Latency":
        return "Relative_Latency (x unpruned, lower is faster)"
    return f"{metric} (ms)" if metric in ("Latency", "Total_Latency") else metric


def _speedup_cell(value: Any) -> str:
    return f"{value:.2f}× faster" if isinstance(value, (int, float)) else "—"


def _flag_cell(flag: Any) -> str:
    """A noisy figure's flag, whole (a steady one: "steady")."""
    return f"noisy: {flag}" if flag else "steady"


def _answer(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    """The headline: the trial(s) that answer the sweep's own question, with the speed-up (the
    trial's own alternating ratio), its noise flag and when its figures were taken."""
    headline = report["headline"]
    whose = "the sweep's objective" if headline["source"] == "sweep" else \
        "the report's rule (the sweep's objective is not stored with these trials)"
    if not headline["trials"]:
        return section("Answer", paragraph(f"No feasible trial yet for {whose}: {headline['rule']}."))
    metrics = headline["metrics"]
    rows = [[f"#{t['number']}", t.get("model", "")] + [t["metrics"].get(m) for m in metrics]
            + [_speedup_cell(t["speedup"]), _flag_cell(t.get("flag")), t.get("measured_at")]
            for t in headline["trials"]]
    front = len(headline["trials"]) > 1
    parts = [paragraph(f"{'Pareto front' if front else 'Best trial'} by {whose}: {headline['rule']}."),
             table(["trial", "model"] + [_with_unit(m) for m in metrics]
                   + ["vs unpruned", "timing", "measured (UTC)"], rows),
             paragraph(f"{report['speedup_basis']}. Absolute milliseconds are shown beside it with "
                       "the time they were taken; they compare only figures taken at the same "
                       "moment.")]
    if all(t["speedup"] is None for t in headline["trials"]):
        parts.append(paragraph("No speed-up: these trials have no Relative_Latency (measured before "
                               "sweeps timed each model against its unpruned network); re-run the "
                               "sweep for it.", "muted"))
    if not front:
        parts.append(table(["parameter", "value"], sorted(headline["trials"][0]["params"].items())))
    return section("Answer", *parts)


def _summary(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    counts = report["counts"]
    best = report["best"]
    parts = [
        table(["status", "trials"], [(s, n) for s, n in counts.items() if n or s == "total"]),
        paragraph("collapsed: the pruned network predicted (almost) one class; gated: retraining "
                  "skipped because the pruned architecture could not meet the latency target; "
                  "early_stopped: retraining stopped by the early-termination rule; failed: the "
                  "trial raised or its measurement failed (reason in trials.csv); rapid: a "
                  "multi-fidelity sweep's trial that was pruned and judged on adaptive-BN Top1 and "
                  "predicted latency only, and not promoted to fine-tuning."),
        _img(drawn, "counts", out_dir, "trial outcomes"),
    ]
    if best["number"] is not None and report["headline"]["source"] == "sweep":
        parts.append(paragraph(f"Most accurate otherwise ({best['rule']}): trial #{best['number']}, "
                               f"{best['model'] or 'model not recorded'}."))
    return section("Trials", *parts)


def _pareto(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    pareto = report["pareto"]
    front = set(pareto["front"])
    rows = [(f"#{p['number']}", p.get("model", ""), p["latency"], p["accuracy"],
             _speedup_cell(p.get("speedup")), _flag_cell(p.get("flag")), p["status"])
            for p in sorted(pareto["points"], key=lambda p: p["latency"]) if p["number"] in front]
    lat, acc = pareto["latency_metric"], pareto["accuracy_metric"]
    if not pareto["points"]:
        return section("Pareto front: accuracy vs latency",
                       paragraph(f"No trial has both {acc} and {lat}.", "muted"))
    parts = [_img(drawn, "pareto", out_dir, "Pareto front"),
             paragraph(f"{len(pareto['points'])} trials have both {acc} and {lat}; "
                       f"{len(front)} lie on the front (no other trial and no reference is both "
                       "faster and at least as accurate)"
                       + (f"; references on it: {', '.join(pareto['references_on_front'])}."
                          if pareto.get("references_on_front") else ".")),
             table(["trial", "model", _with_unit(lat), _with_unit(acc), "vs unpruned", "timing",
                    "status"], rows)]
    if report["baselines"]:
        parts.append(table(["baseline", _with_unit(lat), _with_unit(acc), "timing"],
                           [(b["name"], b["metrics"].get(lat), b["metrics"].get(acc),
                             _flag_cell(b["metrics"].get("measurement_flag")))
                            for b in report["baselines"]]))
        for note in dict.fromkeys(b.get("note") for b in report["baselines"] if b.get("note")):
            names = ", ".join(b["name"] for b in report["baselines"] if b.get("note") == note)
            parts.append(paragraph(f"{names}: {note}.", "muted"))
    return section("Pareto front: accuracy vs latency", *parts)


def _importance(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    importance = report["importance"]
    if not importance:
        return section("Parameter importance",
                       paragraph("Too few trials (or no varying parameter) for importance.", "muted"))
    params = sorted({p for i in importance.values() for p in i["values"]})
    rows = [[p] + [importance[m]["values"].get(p) for m in importance] for p in params]
    caveat = report["caveats"].get("importance")
    return section("Parameter importance",
                   paragraph(f"Caveat: {caveat}.", "note") if caveat else "",
                   paragraph(f"Estimator: {report['importance_estimator']}."),
                   _img(drawn, "importance", out_dir, "parameter importance"),
                   table(["parameter"] + list(importance), rows))


def _correlations(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    rows = [(c["param"], c["metric"], c["pearson"], c["spearman"], c["n"])
            for c in report["correlations"]]
    if not rows:
        return section("Correlations", paragraph("No numeric parameter varies across trials.", "muted"))
    caveat = report["caveats"].get("correlations")
    return section("Correlations of parameters with metrics",
                   paragraph(f"Caveat: {caveat}.", "note") if caveat else "",
                   paragraph("Pearson's r (linear) and Spearman's rho (rank, ties averaged) over "
                             "the trials that have both values; a dash where undefined (fewer "
                             "than 3 trials or a constant column)."),
                   table(["parameter", "metric", "Pearson r", "Spearman rho", "trials"], rows),
                   _img(drawn, "pearson", out_dir, "Pearson correlations"),
                   _img(drawn, "spearman", out_dir, "Spearman correlations"))


def _bins(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    bins = report["bins"]
    rows = [(param, f"[{b['low']:.3f}, {b['high']:.3f})", b["count"], b["mean"])
            for param, param_bins in bins["params"].items() for b in param_bins]
    if not rows:
        return ""  # no sparsity parameter: nothing to bin
    return section(f"Mean {bins['metric']} per sparsity bin (width {bins['width']:g})",
                   paragraph("Each pruner's sparsity parameter is cut into equal-width bins on "
                             f"multiples of {bins['width']:g}; bars show the mean {bins['metric']} "
                             "of the trials in each bin (number of trials above each bar)."),
                   _img(drawn, "bins", out_dir, "binned latency"),
                   table(["parameter", "bin", "trials", f"mean {_with_unit(bins['metric'])}"], rows))


def _progress(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    rows = []
    for metric, points in report["progress"].items():
        last = points[-1] if points else {}
        rows.append((metric, last.get("best"), last.get("cumulative_compute_s")))
    return section("Best so far and compute time",
                   _img(drawn, "progress", out_dir, "best so far"),
                   table(["metric", "best", "total compute (s)"], rows))


def _layers(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path) -> str:
    layers = report["per_layer"]
    if "rows" not in layers:
        return section("Per-layer latency of the headline model", paragraph(layers["absent"], "muted"))
    rows = [(r["name"], r["model_ms"], r["reference_ms"]) for r in layers["rows"]]
    return section("Per-layer latency of the headline model",
                   paragraph(f"Trial #{layers['model']}: {layers['model_total_ms']:.3f} ms summed "
                             f"over layers; {layers['reference']}: "
                             f"{layers['reference_total_ms']:.3f} ms."),
                   _img(drawn, "per_layer", out_dir, "per-layer latency"),
                   table(["layer", f"trial #{layers['model']} (ms)",
                          f"{layers['reference']} (ms)"], rows))


def render_page(report: dict[str, Any], drawn: Mapping[str, Path], out_dir: Path,
                title: str) -> str:
    """The full HTML document for ``report`` (as :func:`pipeline.report.analyse` returns it)."""
    builders = (_answer, _summary, _pareto, _importance, _correlations, _bins, _progress, _layers)
    sections = [build(report, drawn, out_dir) for build in builders]
    sections.append(section("Data", '<p><a href="trials.csv">trials.csv</a> (every trial, '
                                    'parameters and metrics) · <a href="report.json">report.json</a> '
                                    '(every figure on this page)</p>'))
    notes = {"Accuracy": report["note"],
             "Latency": "Latency = sum of OpenVINO per-layer times for one inference; "
                        f"Total_Latency = quiet median (lowest median of {QUIET_WINDOW} consecutive "
                        "requests) of one synchronous request end to end; Relative_Latency = the "
                        "model's request time over its unpruned network's, timed in alternation "
                        "(1 / Relative_Latency = the speed-up); "
                        "Throughput = images/s with the throughput hint on all cores"}
    return page(title, sections, notes)
