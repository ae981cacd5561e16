"""Sweep reports from a fixed, hand-made table of trials: figures against independent computations,
files on disk (valid PNGs, CSV, JSON, HTML that references every plot), and the CLI."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from pipeline.errors import SweepError
from pipeline.messages import TrialRecord
from pipeline.report import BaselinePoint, analyse, build_report
from pipeline.report.analysis import equal_width_bins, pareto_front

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
S70, S60, GROUP = "filter_pruner_70_desired_sparsity", "filter_pruner_60_desired_sparsity", "group_type"

# number, status, s70, s60, group, Top1, Total_Latency, compute_s
FIXED_ROWS = [
    (0, "ok", 0.01, 0.20, "Filters", 83.0, 10.0, 30.0),
    (1, "ok", 0.03, 0.40, "Channels", 81.5, 9.6, 42.0),
    (2, "ok", 0.05, 0.10, "Filters", 82.9, 9.7, 25.0),
    (3, "early_stopped", 0.10, 0.60, "Filters", 80.0, 8.8, 12.0),
    (4, "ok", 0.11, 0.30, "Channels", 81.9, 9.1, 33.0),
    (5, "collapsed", 0.50, 0.90, "Filters", 10.0, 6.9, 8.0),
    (6, "ok", 0.51, 0.50, "Channels", 79.1, 7.9, 40.0),
    (7, "ok", 0.70, 0.70, "Filters", 76.0, 7.2, 44.0),
    (8, "gated", 0.69, 0.80, "Filters", None, 7.0, 3.0),
    (9, "failed", 0.30, 0.30, "Channels", None, None, 1.0),
]


def _profile(scale: float) -> list[dict]:
    """A per-layer profile in the consumer's shape (name, layer_type, exec_type, ms)."""
    return [{"name": f"layer{i}", "layer_type": "Convolution", "exec_type": "jit", "ms": scale * (i + 1)}
            for i in range(4)]


def fixed_trials() -> list[TrialRecord]:
    trials = []
    for number, status, s70, s60, group, top1, latency, compute in FIXED_ROWS:
        metrics: dict = {}
        if latency is not None:
            metrics.update(Total_Latency=latency, Latency=latency * 0.8,
                           latency={"median": latency, "p90": latency * 1.1})
        if top1 is not None:
            metrics["Top1"] = top1
        if number == 0:
            metrics["per_layer"] = _profile(0.5)
        trials.append(TrialRecord(number=number, status=status, metrics=metrics, compute_s=compute,
                                  params={S70: s70, S60: s60, GROUP: group}))
    return trials


def fixed_baselines() -> list[BaselinePoint]:
    return [BaselinePoint("unpruned", {"Top1": 83.2, "Total_Latency": 10.4, "per_layer": _profile(0.6)}),
            BaselinePoint("hand-picked", {"Top1": 80.5, "Total_Latency": 8.0})]


def _column(metric: str, param: str) -> tuple[np.ndarray, np.ndarray]:
    """The (param, metric) pairs of the fixed table, straight from FIXED_ROWS."""
    index = {"Top1": 5, "Total_Latency": 6}[metric]
    p_index = {S70: 2, S60: 3}[param]
    rows = [r for r in FIXED_ROWS if r[index] is not None]
    return np.array([r[p_index] for r in rows]), np.array([r[index] for r in rows])


def test_correlations_equal_scipy() -> None:
    report = analyse(fixed_trials(), metrics=("Top1", "Total_Latency"))
    found = {(c["param"], c["metric"]): c for c in report["correlations"]}
    assert set(found) == {(p, m) for p in (S70, S60) for m in ("Top1", "Total_Latency")}
    for (param, metric), row in found.items():
        x, y = _column(metric, param)
        assert row["n"] == len(x)
        assert row["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
        assert row["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_correlation_undefined_for_constant_column() -> None:
    trials = [TrialRecord(number=i, status="ok", params={"a": float(i)}, metrics={"Top1": 50.0})
              for i in range(5)]
    (row,) = analyse(trials, metrics=("Top1",))["correlations"]
    assert row["pearson"] is None and row["spearman"] is None


def test_bins_equal_hand_computation() -> None:
    report = analyse(fixed_trials(), bin_width=0.02)
    bins = report["bins"]["params"][S70]
    # Total_Latency by S70 bin of width 0.02, listed by hand from FIXED_ROWS (the failed trial has none).
    expected = {(0.00, 0.02): [10.0], (0.02, 0.04): [9.6], (0.04, 0.06): [9.7],
                (0.10, 0.12): [8.8, 9.1], (0.50, 0.52): [6.9, 7.9], (0.68, 0.70): [7.0],
                (0.70, 0.72): [7.2]}
    assert [(b["low"], b["high"]) for b in bins] == [pytest.approx(k) for k in expected]
    for b, values in zip(bins, expected.values()):
        assert b["count"] == len(values)
        assert b["mean"] == pytest.approx(float(np.mean(values)))


def test_bins_keep_values_on_an_edge_in_the_bin_they_name() -> None:
    # 0.7 / 0.1 is 6.999... in floating point; 0.7 still belongs to [0.7, 0.8).
    bins = equal_width_bins([0.7, 0.3, 0.35, 0.0], [1.0, 2.0, 4.0, 8.0], 0.1)
    assert [(b.low, b.high, b.count, b.mean) for b in bins] == [
        (0.0, 0.1, 1, 8.0), (0.3, 0.4, 2, 3.0), (0.7, 0.8, 1, 1.0)]


def test_pareto_front_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    points = [(float(x), float(y)) for x, y in rng.integers(0, 12, size=(60, 2))]
    front = set(pareto_front(points))

    def dominated(i: int) -> bool:
        xi, yi = points[i]
        return any(x <= xi and y >= yi and (x, y) != (xi, yi) for x, y in points)

    undominated = {i for i in range(len(points)) if not dominated(i)}
    # Exact duplicates keep one representative.
    assert {points[i] for i in front} == {points[i] for i in undominated}
    assert len(front) == len({points[i] for i in undominated})


def test_progress_counts_and_best() -> None:
    trials = fixed_trials()
    report = analyse(trials, metrics=("Top1", "Total_Latency"))
    top1 = [r[5] for r in FIXED_ROWS]
    running = None
    for point, value in zip(report["progress"]["Top1"], top1):
        running = value if running is None else max(running, value if value is not None else running)
        assert point["best"] == running
    assert [p["cumulative_compute_s"] for p in report["progress"]["Total_Latency"]] == \
        pytest.approx(np.cumsum([r[7] for r in FIXED_ROWS]))
    assert report["counts"] == {"ok": 6, "collapsed": 1, "gated": 1, "early_stopped": 1,
                                "failed": 1, "running": 0, "rapid": 0, "total": 10}
    assert report["best"]["number"] == 0  # highest Top1
    fastest_good = analyse(trials, min_accuracy=80.0)["best"]["number"]
    assert fastest_good == 3  # 8.8 ms is the lowest Total_Latency with Top1 >= 80


def test_importance_ranks_the_parameter_that_drives_the_metric() -> None:
    rng = np.random.default_rng(0)
    trials = []
    for i in range(40):
        driver, noise = rng.uniform(0, 0.9), rng.uniform(0, 0.9)
        trials.append(TrialRecord(number=i, status="ok", params={"driver": driver, "noise": noise},
                                  metrics={"Total_Latency": 10 - 8 * driver}))
    importance = analyse(trials, metrics=("Total_Latency",))["importance"]["Total_Latency"]
    assert sum(importance["values"].values()) == pytest.approx(1.0)
    assert importance["values"]["driver"] > 0.8 > importance["values"]["noise"]
    assert "RandomForestRegressor" in importance["estimator"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        elif tag == "a":
            self.links.append(attributes["href"])


def assert_valid_report(paths, trials: list[TrialRecord]) -> None:
    """Every plot a decodable PNG that the page references; CSV and JSON complete."""
    for path in paths.plots.values():
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE, path
        with Image.open(path) as image:
            image.load()
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 5, f"{path.name} looks blank"
    parser = _Links()
    parser.feed(paths.html.read_text())
    assert sorted(parser.images) == sorted(p.name for p in paths.plots.values())
    assert {"trials.csv", "report.json"} <= set(parser.links)
    with paths.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == sorted(t.number for t in trials)
    report = json.loads(paths.json.read_text())
    assert report["trials"] == len(trials)
    assert "eval_split" in report["note"] and "eval_split, eval_count" in paths.html.read_text()


def test_report_files_from_fixed_table(tmp_path: Path) -> None:
    trials = fixed_trials()
    paths = build_report(trials, tmp_path / "report", baselines=fixed_baselines())
    assert set(paths.plots) == {"pareto", "counts", "importance", "bins", "progress", "pearson",
                                "spearman", "per_layer"}
    assert_valid_report(paths, trials)
    report = json.loads(paths.json.read_text())
    # Front over (Total_Latency, Top1) of the fixed rows and the references, worked out by hand:
    # hand-picked (8.0 ms, 80.5%) dominates trial #3, so #3 is off it.
    assert report["pareto"]["front"] == [5, 7, 6, 4, 2, 0]
    assert report["pareto"]["references_on_front"] == ["hand-picked", "unpruned"]
    assert [b["name"] for b in report["baselines"]] == ["unpruned", "hand-picked"]
    layers = report["per_layer"]
    assert [r["model_ms"] for r in layers["rows"]] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert layers["reference_total_ms"] == pytest.approx(0.6 * 10)
    csv_text = paths.csv.read_text()
    assert "latency.p90" in csv_text.splitlines()[0] and S70 in csv_text.splitlines()[0]


def test_per_layer_absent_is_said(tmp_path: Path) -> None:
    trials = [t for t in fixed_trials() if t.number != 0]
    paths = build_report(trials, tmp_path / "report")
    report = json.loads(paths.json.read_text())
    assert "no per-layer profile" in report["per_layer"]["absent"]
    assert "per_layer" not in paths.plots
    assert "no per-layer profile" in paths.html.read_text()


def test_report_cli_on_trials_json(tmp_path: Path) -> None:
    from edgeprune.cli import cli

    source = tmp_path / "trials.json"
    source.write_text(json.dumps([t.to_dict() for t in fixed_trials()]))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", str(source), "--out", str(out), "--json",
                                      "--bin-width", "0.1", "--metric", "Top1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metrics"] == ["Top1"]
    assert report["bins"]["width"] == 0.1
    assert (out / "index.html").is_file() and (out / "pareto.png").is_file()


def test_report_cli_rejects_a_file_without_trials(tmp_path: Path) -> None:
    from edgeprune.cli import cli

    source = tmp_path / "bad.json"
    source.write_text(json.dumps({"something": 1}))
    result = CliRunner().invoke(cli, ["report", str(source), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, SweepError)
    assert "trial records" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_profile_read_from_run_dir_only_under_its_key(tmp_path: Path) -> None:
    from pipeline.report.layers import load_profile

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A result.json whose metrics hold numbers but no per-layer profile has no profile.
    (run_dir / "result.json").write_text(json.dumps({"metrics": {"Latency": 1.0, "Top1": 50.0}}))
    assert load_profile({}, run_dir) is None
    (run_dir / "result.json").write_text(json.dumps({"metrics": {"per_layer": _profile(1.0)}}))
    assert load_profile({}, run_dir) == {"layer0": 1.0, "layer1": 2.0, "layer2": 3.0, "layer3": 4.0}
    (run_dir / "profile.json").write_text(json.dumps({"conv": 0.25, "relu": 0.5}))
    assert load_profile({}, run_dir) == {"conv": 0.25, "relu": 0.5}
