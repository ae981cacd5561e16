"""`edgeprune run` end to end on ResNet20 with the mini data set and a few training steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from edgeprune.cli import cli
from pipeline.flow import RunConfig, is_collapsed, produce

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = REPO / "schedules" / "resnet20_filter_rank.yaml"


def _invoke(args: list[str], settings, catch: bool = False) -> Result:
    common = ["--shared", str(settings.shared_dir), "--data", str(settings.data),
              "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu"]
    return CliRunner().invoke(cli, ["run", *args, *common], catch_exceptions=catch)


@pytest.mark.slow
def test_run_writes_a_complete_result(tmp_path: Path, settings) -> None:
    out = tmp_path / "run"
    result = _invoke(["--model", "resnet20_cifar", "--schedule", str(SCHEDULE),
                      "--set", "filter_pruner_50.desired_sparsity=0.25", "--epochs", "1",
                      "--max-steps", "3", "--batch-size", "32", "--raw-eval", "--out", str(out), "--json"],
                     settings)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "ok", record["reason"]
    metrics = record["metrics"]
    for key in ("Total_Latency", "Latency", "Throughput"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key
    for key in ("Top1", "Top5", "Top1_torch", "Top5_torch", "Top1_before", "Top5_before", "Top1_before_raw"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["macs"] < metrics["macs_before"] and metrics["params"] < metrics["params_before"]
    assert metrics["onnx_bytes"] == (out / "model.onnx").stat().st_size
    assert metrics["precision"] and record["stage_seconds"]["retrain"] > 0
    # The rewritten schedule is saved with the run: the override is in it.
    saved = yaml.safe_load((out / "schedule.yaml").read_text())
    assert saved["pruners"]["filter_pruner_50"]["desired_sparsity"] == 0.25
    # 25% of 16 filters removed in each first-stage block.
    layer1 = {w["name"]: w for w in record["pruned_layers"] if w["name"].startswith("layer1.")}
    assert {f"layer1.{i}.conv1.weight" for i in range(3)} <= set(layer1)
    assert all(w["filters_kept"] == 12 and w["filters_before"] == 16
               for name, w in layer1.items() if name.endswith("conv1.weight"))
    assert metrics["removed_fraction"] > 0 and metrics["element_sparsity"] == 0


def test_failed_run_leaves_nothing_behind(tmp_path: Path, settings) -> None:
    out = tmp_path / "run"
    result = _invoke(["--model", "resnet20_cifar", "--schedule", str(SCHEDULE),
                      "--set", "filter_pruner_50.desired_sparsity=1.5", "--out", str(out)], settings,
                     catch=True)
    assert result.exit_code != 0
    assert not out.exists() and not list(tmp_path.iterdir())


def test_collapse_is_detected_at_chance_level() -> None:
    assert is_collapsed(10.4, 10, 1000) and is_collapsed(9.0, 10, 1000)
    assert not is_collapsed(45.0, 10, 1000)


def test_collapse_accounts_for_the_number_of_images() -> None:
    # Issue 31: 11.5% on 1,000 images of 10 classes is within 1.6 standard errors of chance
    # (one-sided binomial p about 0.07): guessing. 12.5% on 10,000 is far above it.
    assert is_collapsed(11.5, 10, 1000)
    assert not is_collapsed(12.5, 10, 10_000)
    # The same 12.5% on 100 images is no evidence at all.
    assert is_collapsed(12.5, 10, 100)
    assert not is_collapsed(20.0, 10, 1000)
    from pipeline.flow import chance_p_value

    assert chance_p_value(11.5, 1000, 10) > 0.01 > chance_p_value(12.5, 10_000, 10)


def test_collapse_is_detected_below_chance_and_on_one_class() -> None:
    assert is_collapsed(8.5, 10, 1000) and is_collapsed(0.0, 10, 1000)
    # Better than chance, but nearly everything predicted as one class.
    assert is_collapsed(45.0, 10, 1000, top_class_share=0.85)
    assert is_collapsed(45.0, 10, 1000, top_class_share=0.80)
    assert not is_collapsed(45.0, 10, 1000, top_class_share=0.3)


#: Distiller-style: 95% of the filters of every residual block's conv1 removed.
GUTTED_CONV1 = """
version: 1
pruners:
  p95:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.95
    weights: [%s]
extensions:
  net_thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: cifar10}
policies:
  - pruner: {instance_name: p95}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [0]
""" % ", ".join(f"module.layer{stage}.{block}.conv1.weight" for stage in (1, 2, 3) for block in range(3))


def test_below_chance_pruned_resnet20_is_collapsed_and_not_retrained(tmp_path: Path, settings) -> None:
    config = RunConfig(schedule=GUTTED_CONV1, model="resnet20_cifar", epochs=1, max_steps_per_epoch=2,
                       batch_size=16, eval_subset=100, bn_recalibrate=0)
    produced = produce(config, settings, tmp_path)
    # Raw statistics (adaptive BN off): below chance, 8.5% on the mini data's val.
    assert produced.metrics["Top1_before"] < 10.0
    assert produced.status == "collapsed" and "chance" in produced.reason
    assert "retrain" not in produced.stage_seconds


def test_evaluate_reports_the_share_of_the_most_predicted_class(settings) -> None:
    import torch

    from pipeline.data import load_data
    from pipeline.models import create_model
    from pipeline.training import evaluate

    val = load_data(settings.data_path, settings.cache_dir).val
    model = create_model("resnet20_cifar")
    with torch.no_grad():  # only the bias decides: every image gets the same class
        model.linear.weight.zero_()
        model.linear.bias.copy_(torch.arange(10.0))
    accuracy = evaluate(model, val)
    assert accuracy.top_class_share == 1.0
    assert is_collapsed(accuracy.top1, 10, accuracy.count, accuracy.top_class_share)


COLLAPSING = """
# Deliberately over-pruned: every classifier weight is zeroed, so only the bias decides.
version: 1
pruners:
  kill_head:
    class: MagnitudeParameterPruner
    thresholds: {module.linear.weight: 1000.0}
policies:
  - pruner: {instance_name: kill_head}
    epochs: [0]
"""


@pytest.mark.parametrize("retrain_collapsed", [False, True])
def test_over_pruned_model_is_flagged_collapsed_and_not_retrained(
        tmp_path: Path, settings, retrain_collapsed: bool) -> None:
    config = RunConfig(schedule=COLLAPSING, model="resnet20_cifar", epochs=1, max_steps_per_epoch=2,
                       batch_size=16, eval_subset=200, retrain_collapsed=retrain_collapsed)
    produced = produce(config, settings, tmp_path)
    assert produced.status == "collapsed" and "chance" in produced.reason
    assert "not above chance" in produced.reason and "images after pruning" in produced.reason
    assert ("retrain" in produced.stage_seconds) == retrain_collapsed
    assert produced.onnx_path is not None and produced.onnx_path.is_file()
