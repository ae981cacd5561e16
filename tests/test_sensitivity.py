"""Sensitivity analysis on the pretrained ResNet20 and the mini data: CSV, PNG, resume, latency."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

from edgeprune.commands.sensitivity import sensitivity
from pipeline.errors import UserError
from pipeline.models import create_model, load_checkpoint
from pipeline.sensitivity import (CSV_FIELDS, SensitivityRow, candidate_layers, parse_levels, read_rows,
                                  run_sensitivity, write_rows)

LAYERS = ["layer1.1.conv1.weight", "layer3.1.conv1.weight"]


@pytest.fixture(scope="module")
def sensitivity_run(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path, mini_data: Path,
                    cache_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sense")
    args = ["--model", "resnet20_cifar", "--shared", str(shared_dir), "--data", str(mini_data),
            "--cache-dir", str(cache_dir), "--torch-device", "cpu", "--levels", "0,0.5",
            "--layers", "layer[13].1.conv1.weight", "--max-val", "60", "--latency-iters", "20",
            "--out", str(out), "--json"]
    result = CliRunner().invoke(sensitivity, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output[result.output.index("{"):])


def test_cli_writes_csv_rows_and_a_png(sensitivity_run: tuple[Path, dict]) -> None:
    out, printed = sensitivity_run
    with (out / "sensitivity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_FIELDS == ("layer", "level", "top1", "top5", "latency_ms", "channels_kept")
    layers = sorted({r["layer"] for r in rows})
    assert layers == LAYERS
    assert len(rows) == len(layers) * 2 == len(printed["rows"])
    for row in rows:
        dense = 16 if row["layer"].startswith("layer1") else 64
        assert int(row["channels_kept"]) == (dense if float(row["level"]) == 0 else dense // 2)
        assert 0 <= float(row["top1"]) <= float(row["top5"]) <= 100
        assert float(row["latency_ms"]) > 0
    baseline = {r["top1"] for r in rows if float(r["level"]) == 0}
    assert len(baseline) == 1  # level 0 is the same unpruned model for every layer
    assert float(baseline.pop()) > 50  # the pretrained net, not random weights (chance is 10%)
    image = matplotlib.image.imread(out / "sensitivity.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_rerun_skips_done_rows_and_redoes_missing_ones(sensitivity_run: tuple[Path, dict],
                                                      checkpoint_resnet20: Path) -> None:
    out, _ = sensitivity_run
    csv_path = out / "sensitivity.csv"
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    calls: list[int] = []

    def counting_eval(_model) -> tuple[float, float]:
        calls.append(1)
        return 50.0, 90.0

    before = read_rows(csv_path)
    rows = run_sensitivity(model, LAYERS, [0.0, 0.5], "Filters", csv_path, counting_eval)
    assert calls == [] and read_rows(csv_path) == before
    assert [r.top1 for r in rows] == [before[(r.layer, r.level)].top1 for r in rows]

    del before[("layer3.1.conv1.weight", 0.5)]
    write_rows(csv_path, before.values())
    run_sensitivity(model, LAYERS, [0.0, 0.5], "Filters", csv_path, counting_eval)
    assert len(calls) == 1
    redone = read_rows(csv_path)[("layer3.1.conv1.weight", 0.5)]
    assert (redone.top1, redone.channels_kept, redone.latency_ms) == (50.0, 32, None)

    # Asking for latency later measures only the rows that lack it, without re-evaluating.
    measured: list[int] = []
    run_sensitivity(model, LAYERS, [0.0, 0.5], "Filters", csv_path, counting_eval,
                    latency_fn=lambda m: measured.append(1) or 1.0)
    assert len(calls) == 1 and len(measured) == 1
    assert read_rows(csv_path)[("layer3.1.conv1.weight", 0.5)].latency_ms == 1.0


def test_layers_refused_by_the_pruner_are_left_out() -> None:
    model = create_model("resnet20_cifar")
    # conv2 filters feed the option-A residual stream: refused; conv1 filters are fine.
    assert candidate_layers(model, "Filters", "layer2.1.conv*") == ["layer2.1.conv1.weight"]
    assert candidate_layers(model, "Channels", "layer2.1.conv*") == ["layer2.1.conv2.weight"]
    with pytest.raises(UserError, match="matches no conv weight"):
        candidate_layers(model, "Filters", "nothing.*")


def test_levels_and_foreign_csv_are_user_errors(tmp_path: Path) -> None:
    assert parse_levels("0.5, 0.1,0.1") == [0.1, 0.5]
    for bad in ("0.1,x", "1.2", ""):
        with pytest.raises(UserError, match="--levels"):
            parse_levels(bad)
    foreign = tmp_path / "sensitivity.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a sensitivity CSV"):
        read_rows(foreign)
    write_rows(tmp_path / "ok.csv", [SensitivityRow("x.weight", 0.1, 1.0, 2.0, None, 3)])
    assert read_rows(tmp_path / "ok.csv")[("x.weight", 0.1)].latency_ms is None
