"""Policies a run's epochs leave out (never fire, or cut short) are warned about and recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.flow import RunConfig, produce, write_result
from pipeline.pruning.coverage import policy_coverage
from pipeline.pruning import load_schedule

DISTILLER_BASELINE = Path(__file__).resolve().parent / "data" / "distiller" / "resnet56_cifar_baseline_training.yaml"

AGP_AND_LR = """
version: 1
pruners:
  agp:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.1
    final_sparsity: 0.5
    group_type: Filters
    weights: [layer1.0.conv1.weight]
  late:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [layer2.0.conv1.weight]
lr_schedulers:
  decay:
    class: ExponentialLR
    gamma: 0.9
policies:
  - pruner: {instance_name: agp}
    starting_epoch: 0
    ending_epoch: 30
    frequency: 2
  - pruner: {instance_name: late}
    epochs: [25]
  - lr_scheduler: {instance_name: decay}
    starting_epoch: 22
    ending_epoch: 300
    frequency: 1
"""


def test_distillers_resumed_epochs_never_fire_in_a_short_run() -> None:
    # Distiller's ResNet56 baseline schedule starts its lr decay at epoch 35.
    schedule = load_schedule(DISTILLER_BASELINE)
    coverage = policy_coverage(schedule, 20)
    assert coverage.not_fired == ["lr_schedulers.training_lr (epochs 35..199 every 1)"]
    assert coverage.truncated == [] and "never fires in a 20-epoch run" in coverage.warnings()[0]
    assert policy_coverage(schedule, 40).not_fired == []


@pytest.mark.parametrize("epochs, not_fired, truncated", [
    (20, ["pruners.late (epochs [25])", "lr_schedulers.decay (epochs 22..299 every 1)"],
     ["pruners.agp (epochs 0..29 every 2)"]),
    (26, [], ["pruners.agp (epochs 0..29 every 2)"]),
    (30, [], []),
    # No retraining: the first pruning epoch (0) is applied once; lr schedules are moot.
    (0, ["pruners.late (epochs [25])"], ["pruners.agp (epochs 0..29 every 2)"]),
])
def test_coverage_of_pruners_and_lr_schedulers(epochs: int, not_fired: list[str], truncated: list[str]) -> None:
    coverage = policy_coverage(load_schedule(AGP_AND_LR), epochs)
    assert (coverage.not_fired, coverage.truncated) == (not_fired, truncated)


def test_a_run_warns_and_records_the_policies_it_leaves_out(tmp_path: Path, settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    config = RunConfig(schedule=AGP_AND_LR, model="resnet20_cifar", epochs=1, max_steps_per_epoch=1,
                       batch_size=16, eval_subset=100)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        produced = produce(config, settings, tmp_path)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("pruners.late (epochs [25]) never fires in a 1-epoch run" in line for line in warned)
    assert any("pruners.agp (epochs 0..29 every 2) is cut short" in line for line in warned)
    record = json.loads(write_result(tmp_path, produced, None).read_text())
    assert record["policies_not_fired"] == ["pruners.late (epochs [25])",
                                            "lr_schedulers.decay (epochs 22..299 every 1)"]
    assert record["policies_truncated"] == ["pruners.agp (epochs 0..29 every 2)"]
