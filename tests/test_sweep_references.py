"""The sweep measures its own references (the unpruned model) once, and the report shows them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from pipeline.search.references import (REFERENCE_PREFIX, load_references, reference_config,
                                        reference_specs)
from pipeline.search.storage import load_trials
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SWEEP = """
name: references-test
method: random
parameters:
  filter_pruner_50_desired_sparsity: {min: 0.1, max: 0.8}
  epochs: {value: 0}
  edgeprune:
    value:
      metrics: [{name: Relative_Latency, goal: minimize}, {name: Top1, goal: maximize}]
command: [edgeprune, producer, --schedule, schedules/resnet20_filter_rank.yaml, --model, resnet20_cifar, "${args}"]
"""


def _sweep(settings: Settings, sweep: Path, out: Path, trials: int, *extra: str):
    result = CliRunner().invoke(cli, [
        "sweep", str(sweep), "--trials", str(trials), "--out", str(out), "--fast-measure",
        "--eval-limit", "200", "--schedule", str(REPO / "schedules" / "resnet20_filter_rank.yaml"),
        "--model", "resnet20_cifar", "--data", str(settings.data), "--cache-dir", str(settings.cache_dir),
        "--shared", str(settings.shared_dir), "--torch-device", "cpu", *extra])
    assert result.exit_code == 0, (result.output[-2000:], result.exception)
    return result


def test_hand_picked_reference_only_for_resnet56() -> None:
    assert [s.name for s in reference_specs("resnet56_cifar")] == ["unpruned", "hand-picked"]
    assert reference_specs("resnet56_cifar")[1].schedule == REPO / "schedules" / "resnet56_filter_rank.yaml"
    assert [s.name for s in reference_specs("resnet20_cifar")] == ["unpruned"]


@pytest.mark.slow
def test_unpruned_reference_keeps_its_batchnorm_statistics() -> None:
    """The unpruned network is measured as it comes; the hand-picked one gets the sweep's adaptive BN."""
    from pipeline.flow import RunConfig

    base = RunConfig(schedule="schedules/resnet56_filter_rank.yaml", bn_recalibrate=512)
    unpruned, hand_picked = (reference_config(base, spec) for spec in reference_specs("resnet56_cifar"))
    assert unpruned.bn_recalibrate == 0 and hand_picked.bn_recalibrate == 512


def test_sweep_stores_references_once_and_report_shows_speedup(settings: Settings, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "sweep"
    first = _sweep(settings, sweep, out, 2)
    assert "reference unpruned: stored in the study (Latency " in first.stderr, first.stderr[-2000:]
    assert "x faster than unpruned resnet20_cifar (1 / Relative_Latency" in first.stdout, first.stdout[-2000:]
    assert all(t.metrics["relative_reference_model"] == "resnet20_cifar" for t in load_trials(out))
    stored = load_references(out)
    assert [(r.name, r.model, r.epochs) for r in stored] == [("unpruned", "resnet20_cifar", 0)]
    unpruned = stored[0]
    assert unpruned.metrics["Total_Latency"] > 0 and 0 <= unpruned.metrics["Top1"] <= 100
    assert unpruned.metrics["params"] > max(t.metrics["params"] for t in load_trials(out))
    assert Path(unpruned.run_dir, "result.json").is_file()

    # A resumed sweep reuses the stored figures: nothing measured again.
    resumed = _sweep(settings, sweep, out, 3)
    assert "reference unpruned" not in resumed.stderr
    assert load_references(out) == stored and len(load_trials(out)) == 3

    # The report, from the study alone (no --baselines), has the unpruned point and the speed-up.
    result = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "report"), "--json"])
    assert result.exit_code == 0, (result.output[-2000:], result.exception)
    report = json.loads(result.output)
    assert [b["name"] for b in report["baselines"]] == ["unpruned, 0 ep"]
    assert "no retraining (epochs 0)" in report["baselines"][0]["note"]
    # Every trial was timed in alternation with the unpruned network: its speed-up is 1 / that ratio.
    relative = {t.number: t.metrics["Relative_Latency"] for t in load_trials(out)}
    assert all(0 < r < 1.5 for r in relative.values()), relative
    assert 0.5 < unpruned.metrics["Relative_Latency"] < 2  # the unpruned network against itself
    for point in report["pareto"]["points"]:
        assert point["speedup"] == pytest.approx(1 / relative[point["number"]], abs=1e-3)
    assert report["headline"]["trials"]
    for trial in report["headline"]["trials"]:
        assert trial["speedup"] == pytest.approx(1 / relative[trial["number"]], abs=1e-3)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "× faster" in page and "unpruned, 0 ep" in page and "epochs 0" in page


@pytest.mark.slow
def test_no_baselines_measures_no_reference(settings: Settings, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "sweep"
    result = _sweep(settings, sweep, out, 1, "--no-baselines")
    assert "reference unpruned" not in result.stderr
    assert load_references(out) == [] and not (out / "references").exists()
    from pipeline.search.storage import stored_study

    assert not [k for k in stored_study(out).user_attrs if k.startswith(REFERENCE_PREFIX)]
