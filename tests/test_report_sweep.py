"""A report built from a small sweep recorded with the real engine (ResNet20, mini data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from test_report import assert_valid_report

from pipeline.search.storage import load_trials
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SWEEP = """
name: report-test
method: random
metric: {name: Top1, goal: maximize}
parameters:
  filter_pruner_50_desired_sparsity: {min: 0.0, max: 0.9}
  filter_pruner_40_desired_sparsity: {min: 0.0, max: 0.9}
  filter_pruner_20_desired_sparsity: {values: [0.2, 0.6]}
  edgeprune:
    value:
      metrics:
        - {name: Total_Latency, goal: minimize}
        - {name: Top1, goal: maximize}
command: [edgeprune, producer, --schedule, schedules/resnet20_filter_rank.yaml, --model, resnet20_cifar, "${args}"]
"""


@pytest.mark.slow
def test_report_from_recorded_sweep(settings: Settings, tmp_path: Path) -> None:
    from edgeprune.cli import cli

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP)
    sweep_dir = tmp_path / "sweep"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "sweep", str(sweep_file), "--trials", "4", "--out", str(sweep_dir), "--fast-measure",
        "--eval-limit", "200", "--schedule", str(REPO / "schedules" / "resnet20_filter_rank.yaml"),
        "--shared", str(settings.shared_dir), "--data", str(settings.data),
        "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu"])
    assert result.exit_code == 0, (result.output[-2000:], result.exception)
    # Live: each trial's stages on stderr as they end, its table row and the front on stdout.
    for number in range(4):
        assert f"trial {number}: pruned " in result.stderr, result.stderr[-2000:]
    assert "trial 0: measured " in result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["trial", "status"]
    assert "Pareto front so far: trial" in result.stdout and "wall time " in result.stdout

    out = tmp_path / "report"
    result = runner.invoke(cli, ["report", str(sweep_dir), "--out", str(out), "--json"])
    assert result.exit_code == 0, (result.output[-2000:], result.exception)
    report = json.loads(result.output)
    trials = load_trials(sweep_dir)
    assert len(trials) == 4 and report["trials"] == 4
    from pipeline.report import ReportPaths

    plots = {name: out / file for name, file in report["files"].items()}
    assert_valid_report(ReportPaths(out, out / "index.html", out / "trials.csv", out / "report.json",
                                    plots), trials)
    measured = [t for t in trials if "Top1" in t.metrics and "Total_Latency" in t.metrics]
    assert len(report["pareto"]["points"]) == len(measured) > 0
    # Correlations of the recorded sweep, recomputed with scipy from the stored records.
    for row in report["correlations"]:
        pairs = [(t.params[row["param"]], t.metrics[row["metric"]]) for t in trials
                 if row["metric"] in t.metrics]
        x, y = np.array(pairs, dtype=float).T
        assert row["n"] == len(x)
        if row["pearson"] is not None:
            assert row["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-9)
            assert row["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)
    assert {"filter_pruner_50_desired_sparsity", "filter_pruner_40_desired_sparsity"} <= \
        set(report["bins"]["params"])
    assert report["counts"]["total"] == 4
    # The headline is the sweep's own question (its front on latency and Top1), not the report's.
    from pipeline.search.config import load_sweep
    from pipeline.search.engine import best_trials

    front = best_trials(load_sweep(SWEEP), trials)
    assert report["headline"]["source"] == "sweep"
    assert report["headline"]["rule"] == "minimize Total_Latency, maximize Top1"
    assert [t["number"] for t in report["headline"]["trials"]] == [r.number for r in front]
