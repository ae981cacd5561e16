"""Distiller's own example schedules (tests/data/distiller/, Apache-2.0), read as Distiller reads
them: no `version`, one pruner listing a whole residual stream (with and without
`group_dependency: Leader`), `fold_batchnorm` in a policy, and the filter-rank v1/v2 pair."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline.errors import ScheduleError
from pipeline.models import create_model
from pipeline.pruning import (CompressionScheduler, load_schedule, prune_one_shot, schedule_from_data,
                              validate_schedule)
from pipeline.pruning.registry import DISTILLER_PRUNERS, PRUNERS
from pipeline.schedule import Schedule

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "distiller"
SCHEDULES = REPO / "schedules"


def _without_rows_pruner(name: str) -> Schedule:
    """A Distiller file as parsed, less its `fc_pruner` (`group_type: Rows`, not supported) and its policy."""
    path = DATA / name
    data = yaml.safe_load(path.read_text())
    del data["pruners"]["fc_pruner"]
    data["policies"] = [p for p in data["policies"] if p.get("pruner", {}).get("instance_name") != "fc_pruner"]
    return schedule_from_data(data, str(path))


def _run_epochs(model: nn.Module, schedule: Schedule, epochs: range) -> None:
    """Drive the schedule's hooks over ``epochs`` as the trainer would, without training."""
    scheduler = CompressionScheduler(model, schedule)
    for epoch in epochs:
        scheduler.on_epoch_begin(epoch)
        scheduler.on_minibatch_end(epoch, 0, 1)
        scheduler.on_epoch_end(epoch)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name.removesuffix(".weight"): tuple(p.shape) for name, p in model.named_parameters()
            if name.endswith(".weight") and p.dim() > 1}


def _conv_linear_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_a_schedule_without_version_loads() -> None:
    schedule = load_schedule(DATA / "resnet56_cifar_baseline_training.yaml")
    assert schedule.version == 1 and not schedule.pruners
    assert schedule.lr_schedulers["training_lr"].class_name == "StepLR"
    assert schedule.policies[0].epochs[:2] == (35, 36)
    with pytest.raises(ScheduleError, match="version=2"):
        load_schedule("version: 2\npolicies: []\n")


def test_filter_rank_v2_is_shipped_under_its_name_and_the_old_one() -> None:
    published = load_schedule(DATA / "resnet56_cifar_filter_rank_v2.yaml")
    assert load_schedule(SCHEDULES / "resnet56_cifar_filter_rank_v2.yaml") == published
    assert load_schedule(SCHEDULES / "resnet56_filter_rank.yaml") == published
    model = create_model("resnet56_cifar", shortcut="B")
    report = prune_one_shot(model, published)
    # The figures in the file's own header (Distiller's option-B ResNet56).
    assert (report.macs_before, report.macs_after) == (125_747_840, 67_797_632)
    assert _conv_linear_weights(model) == 570_704


def test_filter_rank_v1_gives_distillers_published_shapes() -> None:
    model = create_model("resnet56_cifar", shortcut="B")
    report = prune_one_shot(model, load_schedule(SCHEDULES / "resnet56_cifar_filter_rank.yaml"))
    shapes = _shapes(model)
    # Distiller's table for v1: 7 of 16, 16 of 32, 58 and 45 of 64 filters; 634,640 weights.
    assert {shapes[f"layer1.{i}.conv1"][0] for i in range(9)} == {7}
    assert [shapes[f"layer2.{i}.conv1"][0] for i in range(9)] == [32, 16, 16, 16, 16, 32, 16, 16, 32]
    assert [shapes[f"layer3.{i}.conv1"][0] for i in range(9)] == [64, 58, 45, 45, 64, 45, 45, 45, 45]
    assert _conv_linear_weights(model) == 634_640
    assert report.macs_after == 78_856_832


def test_rows_pruner_is_refused_with_one_line() -> None:
    with pytest.raises(ScheduleError, match=r"pruners\.fc_pruner\.group_type='Rows' is not supported"):
        load_schedule(DATA / "resnet20_filters.schedule_agp_4.yaml")


def test_leader_prunes_the_residual_stream_once_as_distiller_did() -> None:
    # low_pruner lists the stage-2 stream (conv2s + downsample) without group_dependency,
    # low_pruner_2 the stage-3 stream with `group_dependency: Leader`.
    schedule = _without_rows_pruner("resnet20_filters.schedule_agp_4.yaml")
    assert schedule.pruners["low_pruner_2"].args["group_dependency"] == "Leader"
    model = create_model("resnet20_cifar", shortcut="B")
    _run_epochs(model, schedule, range(180, 230))
    shapes = _shapes(model)
    # Distiller's published shapes after this schedule (header of the file).
    assert {shapes[f"layer2.{i}.{conv}"][:2] for i in range(3) for conv in ("conv1", "conv2")} == {(16, 16)}
    assert shapes["layer2.0.downsample.0"] == (16, 16, 1, 1)
    assert shapes["layer3.0.conv1"] == (64, 16, 3, 3) and shapes["layer3.0.conv2"] == (32, 64, 3, 3)
    assert shapes["layer3.0.downsample.0"] == (32, 16, 1, 1)
    assert shapes["layer3.1.conv1"] == (64, 32, 3, 3) and shapes["layer3.1.conv2"] == (32, 64, 3, 3)
    assert shapes["linear"] == (10, 32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fold_batchnorm_policy_args_are_accepted() -> None:
    schedule = _without_rows_pruner("resnet20_filters.bn_fold.schedule_agp.yaml")
    assert schedule.policies[0].args == {"fold_batchnorm": True}
    model = create_model("resnet20_cifar", shortcut="B")
    _run_epochs(model, schedule, range(0, 50))
    shapes = _shapes(model)
    assert {shapes[f"layer2.{i}.{conv}"][:2] for i in range(3) for conv in ("conv1", "conv2")} == {(16, 16)}
    assert shapes["layer2.0.downsample.0"] == (16, 16, 1, 1)
    assert shapes["layer3.0.conv1"] == (64, 16, 3, 3) and shapes["linear"] == (10, 64)


STREAM = ["layer3.0.conv2.weight", "layer3.0.downsample.0.weight", "layer3.1.conv2.weight",
          "layer3.2.conv2.weight"]


def _stream_pruner(weights: list[str], extra: str = "") -> str:
    return (f"version: 1\npruners:\n  stream:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
            f"    desired_sparsity: 0.25\n{extra}    weights: [{', '.join(weights)}]\n"
            "policies:\n  - pruner: {instance_name: stream}\n    epochs: [0]\n")


@pytest.mark.parametrize("leader", [0, 1])
def test_a_coupled_group_is_ranked_by_its_first_listed_member(leader: int) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", shortcut="B")
    weights = [STREAM[leader], *[w for i, w in enumerate(STREAM) if i != leader]]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    scores = before[weights[0]].abs().mean(dim=(1, 2, 3))
    keep = sorted(torch.argsort(scores, descending=True)[:48].tolist())
    report = prune_one_shot(model, load_schedule(_stream_pruner(weights, "    group_dependency: Leader\n")))
    params = dict(model.named_parameters())
    for weight in STREAM:
        # Every member keeps the leader's 48 strongest filters, removed once for the whole stream.
        assert torch.equal(params[weight], before[weight][keep])
    assert torch.equal(params["linear.weight"], before["linear.weight"][:, keep])
    assert [r.channels_after for r in report.layers] == [48] * 4


def test_two_pruners_on_one_coupled_group_are_still_refused() -> None:
    schedule = load_schedule(f"""
version: 1
pruners:
  stream:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.25
    weights: [{STREAM[0]}, {STREAM[1]}]
  other:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [{STREAM[2]}]
policies:
  - pruner: {{instance_name: stream}}
    epochs: [0]
  - pruner: {{instance_name: other}}
    epochs: [0]
""")
    with pytest.raises(ScheduleError, match="pruned twice"):
        validate_schedule(schedule, create_model("resnet20_cifar", shortcut="B"))


def _readme_bullet(title: str) -> str:
    text = (REPO / "docs" / "schedules.md").read_text()
    start = text.index(f"- **{title}**")
    return text[start:text.index("\n- ", start + 1)]


def test_readme_lists_exactly_the_distiller_pruners_not_implemented() -> None:
    listed = set(re.findall(r"`(\w+)`", _readme_bullet("Distiller pruners not supported")))
    assert listed == set(DISTILLER_PRUNERS) - set(PRUNERS.names())


@pytest.mark.parametrize("name, distiller", [("RandomLevelStructureParameterPruner", True),
                                             ("BernoulliFilterPruner_AGP", True), ("HybridAGP", False)])
def test_an_unimplemented_distiller_pruner_is_named_as_such(name: str, distiller: bool) -> None:
    text = f"version: 1\npruners:\n  p:\n    class: {name}\npolicies:\n  - pruner: {{instance_name: p}}\n    epochs: [0]\n"
    with pytest.raises(ScheduleError, match="is not a supported pruner class") as error:
        load_schedule(text)
    assert str(error.value).endswith(f"({name} is a Distiller class edgeprune does not implement)") == distiller


def test_distillers_classifier_name_fc_is_our_linear() -> None:
    # Distiller's ResNets call the classifier `fc`; its schedules name `module.fc.weight`.
    from pipeline.pruning.base import resolve_weight

    model = create_model("resnet20_cifar")
    assert resolve_weight(model, "module.fc.weight", "pruners.p.weights") is model.linear.weight
    schedule = load_schedule("""
pruners:
  fc_agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.5
    weights: [module.fc.weight]
policies:
  - pruner: {instance_name: fc_agp}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
""")
    validate_schedule(schedule, model)
