"""Structured pruning: counts per layer, physical removal, kept weights, MACs/params, lr schedulers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import ScheduleError
from pipeline.export import export_onnx
from pipeline.measure import onnx_facts
from pipeline.models import count_macs_params, create_model, load_checkpoint
from pipeline.pruning import (CompressionScheduler, PruningContext, arch_signature, load_schedule,
                              prune_one_shot, validate_schedule)
from pipeline.pruning.structured import round_kept, structures_to_prune

HAND_PICKED = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_filter_rank.yaml"
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def schedule_text(*pruners: tuple[str, str, float, list[str]], extra: str = "") -> str:
    """A schedule with one one-shot pruner per (name, group_type, sparsity, weights), all at epoch 0."""
    body = "version: 1\n" + extra + "pruners:\n"
    for name, group_type, sparsity, weights in pruners:
        body += (f"  {name}:\n    class: L1RankedStructureParameterPruner\n    group_type: {group_type}\n"
                 f"    desired_sparsity: {sparsity}\n    weights: [{', '.join(weights)}]\n")
    body += "policies:\n" + "".join(f"  - pruner: {{instance_name: {p[0]}}}\n    epochs: [0]\n" for p in pruners)
    return body


def expected_kept(count: int, sparsity: float) -> int:
    """Distiller's rule, written out independently: floor(sparsity * n) go, at least one stays."""
    removed = int(np.floor(sparsity * count))
    return max(1, count - removed)


@pytest.mark.parametrize("count, sparsity, removed", [
    (16, 0.7, 11), (32, 0.6, 19), (64, 0.4, 25), (64, 0.2, 12), (16, 0.99, 15), (1, 0.5, 0), (10, 0.3, 3),
    (16, 0.0, 0)])
def test_distiller_count_rule(count: int, sparsity: float, removed: int) -> None:
    assert structures_to_prune(count, sparsity) == removed


def test_round_kept_gives_multiples_within_bounds() -> None:
    for count in (16, 32, 64, 13):
        for kept in range(1, count + 1):
            for round_to in (4, 8, 16):
                rounded = round_kept(count, kept, round_to)
                assert kept <= rounded <= count
                assert rounded % round_to == 0 or rounded == count
    assert round_kept(16, 5, None) == 5


@pytest.mark.parametrize("model_name", ["resnet20_cifar", "resnet56_cifar"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_removes_expected_counts_per_layer_and_still_runs(model_name: str, shortcut: str) -> None:
    torch.manual_seed(0)
    model = create_model(model_name, shortcut=shortcut)
    plan = [("f", "Filters", 0.7, ["layer1.0.conv1.weight", "layer2.1.conv1.weight"]),
            ("c", "Channels", 0.45, ["layer3.0.conv2.weight", "module.layer2.2.conv2.weight"])]
    before = {n: m.weight.shape for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    report = prune_one_shot(model, load_schedule(schedule_text(*plan)), X)
    convs = dict(model.named_modules())
    for _, group_type, sparsity, weights in plan:
        for weight in weights:
            layer = weight.removeprefix("module.").removesuffix(".weight")
            block = layer.rsplit(".", 1)[0]
            if group_type == "Filters":
                kept = expected_kept(before[layer][0], sparsity)
                assert convs[layer].out_channels == kept and convs[f"{block}.bn1"].num_features == kept
                assert convs[f"{block}.conv2"].in_channels == kept
            else:
                kept = expected_kept(before[layer][1], sparsity)
                assert convs[layer].in_channels == kept and convs[f"{block}.conv1"].out_channels == kept
            row = next(r for r in report.layers if r.name == layer)
            dim = 0 if group_type == "Filters" else 1
            assert (row.channels_before, row.channels_after) == (before[layer][dim], kept)
    assert model(X).shape == (2, 10)
    assert report.macs_after < report.macs_before and report.params_after < report.params_before
    assert report.pruners_applied == ["f", "c"]


def _hand_derived_macs_params(model_name: str, shortcut: str, kept: dict[str, int]) -> tuple[int, int, int]:
    """MACs, deployed parameters (BN folded: one bias per BN channel) and conv+linear weights of a
    CIFAR ResNet whose block conv1s keep ``kept[layer]`` filters, from the conv formula
    H*W*Cout*Cin*k*k (Distiller's convention)."""
    blocks = (int(model_name.removeprefix("resnet").removesuffix("_cifar")) - 2) // 6
    macs = 32 * 32 * 16 * 3 * 9
    weights = 16 * 3 * 9
    bn_channels = 16
    in_planes = 16
    for stage, (planes, size) in enumerate(((16, 32), (32, 16), (64, 8)), start=1):
        for i in range(blocks):
            mid = kept.get(f"layer{stage}.{i}.conv1", planes)
            weights += mid * in_planes * 9 + planes * mid * 9
            macs += size * size * (mid * in_planes * 9 + planes * mid * 9)
            bn_channels += mid + planes
            if in_planes != planes and shortcut == "B":
                weights += planes * in_planes
                macs += size * size * planes * in_planes
                bn_channels += planes
            in_planes = planes
    macs += 64 * 10
    weights += 64 * 10
    return macs, weights + 10 + bn_channels, weights


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_hand_picked_schedule_macs_and_params_match_hand_derivation(shortcut: str) -> None:
    schedule = load_schedule(HAND_PICKED)
    model = create_model("resnet56_cifar", shortcut=shortcut)
    report = prune_one_shot(model, schedule)
    stage_width = {"layer1": 16, "layer2": 32, "layer3": 64}
    kept = {}
    for spec in schedule.pruners.values():
        for weight in spec.args["weights"]:
            layer = weight.removeprefix("module.").removesuffix(".weight")
            kept[layer] = expected_kept(stage_width[layer.split(".")[0]], spec.args["desired_sparsity"])
    assert (report.macs_before, report.params_before) == _hand_derived_macs_params("resnet56_cifar", shortcut, {})[:2]
    macs, params, conv_linear_weights = _hand_derived_macs_params("resnet56_cifar", shortcut, kept)
    assert (report.macs_after, report.params_after) == (macs, params)
    measured_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert measured_weights == conv_linear_weights
    if shortcut == "B":
        # The figures Distiller published for this schedule on its option-B ResNet56.
        assert (report.macs_before, report.macs_after) == (125_747_840, 67_797_632)
        assert measured_weights == 570_704
    assert model(X).shape == (2, 10)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_report_params_are_those_of_the_deployed_onnx(shortcut: str, tmp_path: Path) -> None:
    # One definition: the BN-folded parameters the exported ONNX holds, before and after pruning.
    model = create_model("resnet20_cifar", shortcut=shortcut).eval()
    torch.manual_seed(0)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        # Distinct BN vectors (fresh ones are all equal, and the exporter shares equal constants).
        for tensor in (bn.weight.data, bn.bias.data, bn.running_mean):
            tensor.uniform_(0.5, 1.5)
    export_onnx(model, tmp_path / "dense.onnx")
    report = prune_one_shot(model, load_schedule(schedule_text(
        ("f", "Filters", 0.5, ["layer1.0.conv1.weight", "layer3.2.conv1.weight"]))))
    export_onnx(model.eval(), tmp_path / "pruned.onnx")
    assert report.params_before == onnx_facts(tmp_path / "dense.onnx").params
    assert report.params_after == onnx_facts(tmp_path / "pruned.onnx").params < report.params_before
    assert count_macs_params(model)[1] == report.params_after


def test_kept_filters_survive_and_untouched_layers_are_identical(checkpoint_resnet20: Path) -> None:
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    prune_one_shot(model, load_schedule(schedule_text(("f", "Filters", 0.5, ["layer2.1.conv1.weight"]))))
    w = original["layer2.1.conv1.weight"]
    scores = w.abs().reshape(w.shape[0], -1).mean(dim=1).numpy()
    kept_idx = np.sort(np.argsort(scores, kind="stable")[32 - expected_kept(32, 0.5):])
    state = model.state_dict()
    assert torch.equal(state["layer2.1.conv1.weight"], w[kept_idx])
    assert torch.equal(state["layer2.1.bn1.running_mean"], original["layer2.1.bn1.running_mean"][kept_idx])
    assert torch.equal(state["layer2.1.conv2.weight"], original["layer2.1.conv2.weight"][:, kept_idx])
    touched = ("layer2.1.conv1.", "layer2.1.bn1.", "layer2.1.conv2.")
    for key, value in original.items():
        if not key.startswith(touched):
            assert torch.equal(state[key], value), key


def test_l1_and_l2_criteria_pick_different_filters() -> None:
    # Filter 0: one big weight (large L2, small L1); filter 1: many moderate ones (the opposite).
    model = create_model("resnet20_cifar")
    with torch.no_grad():
        conv = model.layer1[0].conv1
        conv.weight.fill_(1.0)
        conv.weight[0].zero_()
        conv.weight[0, 0, 0, 0] = 20.0
        conv.weight[1].fill_(0.2)
    text = schedule_text(("p", "Filters", 0.07, ["layer1.0.conv1.weight"]))
    removed = {}
    for variant in ("L1RankedStructureParameterPruner", "L2RankedStructureParameterPruner"):
        pruned = create_model("resnet20_cifar")
        pruned.load_state_dict(model.state_dict())
        prune_one_shot(pruned, load_schedule(text.replace("L1RankedStructureParameterPruner", variant)))
        survivors = pruned.layer1[0].conv1.weight
        removed[variant] = [i for i in range(16) if not any(torch.equal(conv.weight[i], s) for s in survivors)]
    assert removed == {"L1RankedStructureParameterPruner": [0], "L2RankedStructureParameterPruner": [1]}
    by_arg = create_model("resnet20_cifar")
    by_arg.load_state_dict(model.state_dict())
    prune_one_shot(by_arg, load_schedule(text, ["p.criterion=l2"]))
    assert torch.equal(by_arg.layer1[0].conv1.weight[0], conv.weight[0])


def test_round_to_per_pruner_and_global_default() -> None:
    text = schedule_text(("a", "Filters", 0.7, ["layer1.0.conv1.weight", "layer3.1.conv1.weight"]),
                         ("b", "Channels", 0.6, ["layer2.1.conv2.weight"]), extra="round_to: 8\n")
    model = create_model("resnet20_cifar")
    prune_one_shot(model, load_schedule(text, ["b.round_to=16"]))
    assert model.layer1[0].conv1.out_channels == 8     # 5 kept -> 8
    assert model.layer3[1].conv1.out_channels == 24    # 20 kept -> 24
    assert model.layer2[1].conv2.in_channels == 16     # 13 kept -> 16 (per-pruner round_to)
    assert model(X).shape == (2, 10)


def test_option_a_residual_stream_is_refused_option_b_prunes_it() -> None:
    text = schedule_text(("r", "Filters", 0.5, ["layer2.1.conv2.weight"]))
    model_a = create_model("resnet20_cifar", shortcut="A")
    with pytest.raises(ScheduleError, match=r"pruners\.r: Filters of layer2\.1\.conv2 .*option-A.*--shortcut B"):
        prune_one_shot(model_a, load_schedule(text))
    assert arch_signature(model_a) == arch_signature(create_model("resnet20_cifar", shortcut="A"))
    model_b = create_model("resnet20_cifar", shortcut="B")
    prune_one_shot(model_b, load_schedule(text))
    stage = [model_b.layer2[0].downsample[0].out_channels] + [b.conv2.out_channels for b in model_b.layer2]
    assert stage == [16] * 4
    assert model_b.layer3[0].conv1.in_channels == 16 and model_b.layer3[0].downsample[0].in_channels == 16
    assert model_b(X).shape == (2, 10)


def test_coupled_layers_pruned_twice_are_refused() -> None:
    text = schedule_text(("a", "Filters", 0.5, ["layer1.0.conv1.weight"]),
                         ("b", "Channels", 0.5, ["layer1.0.conv2.weight"]))
    with pytest.raises(ScheduleError, match="coupled .* pruned twice"):
        validate_schedule(load_schedule(text), create_model("resnet20_cifar"))


def test_scheduler_prunes_at_its_epoch_and_refreshes_the_optimizer() -> None:
    text = schedule_text(("f", "Filters", 0.5, ["layer1.1.conv1.weight"])).replace("epochs: [0]", "epochs: [2]")
    model = create_model("resnet20_cifar")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CompressionScheduler(model, load_schedule(text), optimizer)
    changed = []
    for epoch in range(4):
        changed.append(scheduler.on_epoch_begin(epoch, optimizer))
        loss = model(X).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.on_epoch_end(epoch, optimizer)
    assert changed == [False, False, True, False]
    assert model.layer1[1].conv1.out_channels == 8
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in model.parameters()}
    assert scheduler.report().layers[0].channels_after == 8


@pytest.mark.parametrize("pass_report", [True, False])
def test_one_shot_then_scheduler_does_not_prune_twice(pass_report: bool) -> None:
    schedule = load_schedule(schedule_text(("f", "Filters", 0.5, ["layer1.1.conv1.weight"])))
    model = create_model("resnet20_cifar")
    report = prune_one_shot(model, schedule)
    scheduler = CompressionScheduler(model, schedule, after=report if pass_report else None)
    assert scheduler.on_epoch_begin(0) is False
    assert model.layer1[1].conv1.out_channels == 8
    # Sparsity stays relative to the dense layer the model remembers.
    assert PruningContext(model).original_counts[("layer1.1.conv1", "Filters")] == 16


LR_TEXT = """
version: 1
lr_schedulers:
  lr:
    {body}
policies:
  - lr_scheduler: {{instance_name: lr}}
    starting_epoch: 2
    ending_epoch: 8
"""


@pytest.mark.parametrize("body, reference", [
    ("class: ExponentialLR\n    gamma: 0.9", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    ("class: StepLR\n    step_size: 2\n    gamma: 0.5", lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5)),
    ("class: MultiStepLR\n    milestones: [1, 4]", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 4])),
    ("class: CosineAnnealingLR\n    T_max: 4\n    eta_min: 0.01",
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 4, 0.01)),
])
def test_lr_schedulers_follow_policy_epochs_like_torch(body: str, reference) -> None:
    model = create_model("resnet20_cifar")
    ours = torch.optim.SGD(model.parameters(), lr=0.1)
    theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_scheduler = reference(theirs)
    scheduler = CompressionScheduler(model, load_schedule(LR_TEXT.format(body=body)), ours)
    for epoch in range(10):
        scheduler.on_epoch_begin(epoch, ours)
        scheduler.on_epoch_end(epoch, ours)
        if 2 <= epoch < 8:
            theirs.step()
            torch_scheduler.step()
        assert math.isclose(ours.param_groups[0]["lr"], theirs.param_groups[0]["lr"], rel_tol=1e-9), epoch
    assert ours.param_groups[0]["lr"] != 0.1
