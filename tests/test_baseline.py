"""`edgeprune baseline` on ResNet20 with the mini data: every row produced and measured through the
flow, MACs that match an independent count, saved tables that read back, and a report that uses
the table as its unpruned per-layer reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_report import fixed_trials

from pipeline.baseline import COLUMNS, baseline_specs, load_table
from pipeline.errors import UserError
from pipeline.models import count_macs_params, create_model
from pipeline.pruning import load_schedule, prune_one_shot
from pipeline.report import BaselinePoint, build_report
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = REPO / "schedules" / "resnet20_filter_rank.yaml"


def _settings_args(settings: Settings) -> list[str]:
    return ["--shared", str(settings.shared_dir), "--data", str(settings.data),
            "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu"]


def _expected_macs() -> tuple[int, int]:
    """MACs of ResNet20 before and after the hand-picked schedule, counted without the flow."""
    model = create_model("resnet20_cifar")
    unpruned = count_macs_params(model)[0]
    prune_one_shot(model, load_schedule(SCHEDULE), torch.zeros(1, 3, 32, 32))
    return unpruned, count_macs_params(model)[0]


@pytest.fixture(scope="module")
def baseline_dir(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeprune.cli import cli

    out = tmp_path_factory.mktemp("baseline") / "table"
    result = CliRunner().invoke(cli, [
        "baseline", "--model", "resnet20_cifar", "--schedule", str(SCHEDULE), "--epochs", "1",
        "--max-steps", "2", "--eval-limit", "200", "--quick", "--out", str(out), "--json",
        *_settings_args(settings)])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


@pytest.mark.slow
def test_baseline_rows_and_figures(baseline_dir: Path) -> None:
    table = load_table(baseline_dir / "baseline.json")
    assert [r.name for r in table.rows] == [s.name for s in baseline_specs(1)]
    assert [r.epochs for r in table.rows] == [0, 0, 1, 1]
    unpruned_macs, pruned_macs = _expected_macs()
    by_name = {r.name: r for r in table.rows}
    for row in table.rows:
        assert row.status == "ok", row.reason
        m = row.metrics
        for key in ("Top1", "Top5", "Top1_torch", "Top5_torch"):
            assert 0.0 <= m[key] <= 100.0
        assert m["Top5"] >= m["Top1"]
        assert m["Latency"] > 0 and m["Total_Latency"] > 0 and m["Throughput"] > 0
        assert m["onnx_bytes"] == (baseline_dir / row.run_dir / "model.onnx").stat().st_size
        assert (baseline_dir / row.run_dir / "result.json").is_file()
        assert m["macs"] == (pruned_macs if row.pruned else unpruned_macs), row.name
    # Fewer MACs, fewer parameters, a smaller file once the hand-picked filters are gone.
    assert by_name["hand-picked"].metrics["params"] < by_name["unpruned"].metrics["params"]
    assert by_name["hand-picked"].metrics["onnx_bytes"] < by_name["unpruned"].metrics["onnx_bytes"]


@pytest.mark.slow
def test_baseline_tables_saved(baseline_dir: Path) -> None:
    markdown = (baseline_dir / "baseline.md").read_text()
    lines = markdown.splitlines()
    assert all(title in lines[0] for title, _, _ in COLUMNS)
    assert [line.split("|")[1].strip() for line in lines[2:6]] == [s.name for s in baseline_specs(1)]
    assert "Top1/Top5 on the test split (200 images) of cifar-10-binary-mini.tar.gz." in markdown
    data = json.loads((baseline_dir / "baseline.json").read_text())
    assert data["model"] == "resnet20_cifar" and data["epochs"] == 1
    assert not list(baseline_dir.parent.glob(".*.partial"))


@pytest.mark.slow
def test_report_uses_baseline_table(baseline_dir: Path, tmp_path: Path) -> None:
    rows = load_table(baseline_dir).rows
    unpruned = rows[0]
    # The best trial of the fixed table gets the unpruned model's measured profile, halved.
    layers = [dict(layer, ms=layer["ms"] / 2) for layer in unpruned.metrics["per_layer"]]
    trials = fixed_trials()
    trials[0].metrics["per_layer"] = layers
    paths = build_report(trials, tmp_path / "report",
                         baselines=[BaselinePoint(r.name, r.metrics, r.run_dir) for r in rows])
    report = json.loads(paths.json.read_text())
    per_layer = report["per_layer"]
    assert per_layer["reference"] == "unpruned"
    assert [r["name"] for r in per_layer["rows"]] == [layer["name"] for layer in unpruned.metrics["per_layer"]]
    assert per_layer["model_total_ms"] == pytest.approx(per_layer["reference_total_ms"] / 2)
    assert "per_layer" in paths.plots
    assert [b["name"] for b in report["baselines"]] == [r.name for r in rows]


def test_baseline_missing_schedule_is_one_clear_error(tmp_path: Path, settings: Settings) -> None:
    from edgeprune.cli import cli

    result = CliRunner().invoke(cli, ["baseline", "--schedule", str(tmp_path / "nope.yaml"),
                                      "--out", str(tmp_path / "out"), *_settings_args(settings)])
    assert isinstance(result.exception, UserError)
    assert "nope.yaml not found" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_load_table_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"rows": "nope"}))
    with pytest.raises(UserError, match="not a baseline table"):
        load_table(path)


@pytest.mark.slow
def test_unpruned_row_is_the_pretrained_network_as_it_comes(baseline_dir: Path, settings: Settings,
                                                            checkpoint_resnet20: Path) -> None:
    """Adaptive BN is for pruned rows: re-estimating the unpruned network's statistics on 512
    images cost ResNet20 3.2 points on the lossless test split (88.52% against its 91.73%)."""
    from pipeline.data import load_data
    from pipeline.models import load_checkpoint
    from pipeline.training import evaluate

    unpruned = load_table(baseline_dir).rows[0]
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    test = load_data(settings.data_path, settings.cache_dir).split("test", 200)
    assert unpruned.name == "unpruned" and unpruned.metrics["bn_recalibrate"] == 0
    assert unpruned.metrics["Top1_torch"] == pytest.approx(evaluate(model.eval(), test).top1, abs=1e-9)
