"""Depth pruning: ResidualBlockPruner removes the lowest-ranked identity blocks from the module tree."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pipeline.batchnorm import Calibration, recalibrate_bn
from pipeline.data import load_data
from pipeline.errors import ScheduleError
from pipeline.export import export_onnx
from pipeline.models import count_macs_params, create_model, load_checkpoint
from pipeline.pruning import (CompressionScheduler, arch_signature, load_schedule, prune_one_shot,
                              validate_schedule)
from pipeline.pruning.blocks import identity_blocks, removed_blocks
from pipeline.schedule import Override
from pipeline.search.mapping import map_params

SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"


def block_schedule(blocks: list[str], sparsity: float, criterion: str, extra_pruners: str = "",
                   extra_policies: str = "", header: str = "") -> str:
    return (f"version: 1\n{header}pruners:\n  block_pruner:\n    class: ResidualBlockPruner\n"
            f"    desired_sparsity: {sparsity}\n    criterion: {criterion}\n    blocks: [{', '.join(blocks)}]\n"
            f"{extra_pruners}policies:\n  - pruner: {{instance_name: block_pruner}}\n    epochs: [0]\n{extra_policies}")


def conv_nodes(path: Path) -> int:
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def pretrained(name: str, shared_dir: Path) -> nn.Module:
    model = create_model(name)
    load_checkpoint(model, next((shared_dir / "models").glob(f"{name.split('_')[0]}-*.th")))
    return model.eval()


@pytest.mark.parametrize("name", ["resnet20_cifar", "resnet56_cifar"])
def test_l1_bn2_removes_the_blocks_with_the_smallest_gamma(name: str, shared_dir: Path) -> None:
    model = pretrained(name, shared_dir)
    blocks = identity_blocks(model)
    assert "layer2.0" not in blocks and "layer3.0" not in blocks and len(blocks) == 3 * (model.depth - 2) // 6 - 2
    gammas = {b: model.get_submodule(b).bn2.weight.abs().mean().item() for b in blocks}
    sparsity = 0.5
    expected = sorted(blocks, key=gammas.__getitem__)[: int(np.floor(sparsity * len(blocks)))]
    report = prune_one_shot(model, load_schedule(block_schedule([f"module.{b}" for b in blocks], sparsity, "l1_bn2")))
    assert sorted(report.blocks_removed) == sorted(expected) == sorted(removed_blocks(model))
    assert sorted(report.blocks_kept) == sorted(set(blocks) - set(expected))
    assert report.pruners_applied == ["block_pruner"]
    assert all(not any(n.startswith(b + ".") for n, _ in model.named_parameters()) for b in expected)


def test_sensitivity_removes_the_blocks_whose_lone_removal_costs_least(settings, shared_dir: Path) -> None:
    """Scores written out independently: each block replaced by nn.Identity on a copy, BN
    statistics re-estimated, cross-entropy on the calibration images."""
    model = pretrained("resnet20_cifar", shared_dir)
    data = load_data(settings.data_path, settings.cache_dir)
    calibration = Calibration.from_split(data.train, 128)
    blocks = identity_blocks(model)
    losses = {}
    for block in blocks:
        probe = copy.deepcopy(model)
        stage, index = block.split(".")
        getattr(probe, stage)[int(index)] = nn.Identity()
        recalibrate_bn(probe, calibration.images)
        with torch.no_grad():
            losses[block] = nn.functional.cross_entropy(probe.eval()(calibration.images), calibration.labels).item()
    expected = sorted(blocks, key=losses.__getitem__)[:3]
    report = prune_one_shot(model, load_schedule(block_schedule(blocks, 0.45, "sensitivity")),
                            calibration=calibration)
    assert sorted(report.blocks_removed) == sorted(expected)


def test_sensitivity_ranking_prints_a_line_per_block_and_is_cached_per_weights_and_images(
        settings, shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.pruning import blocks as block_module

    model = pretrained("resnet20_cifar", shared_dir)
    calibration = Calibration.from_split(load_data(settings.data_path, settings.cache_dir).train, 16)
    names = identity_blocks(model)[-3:]  # the deepest, cheapest to probe
    probed: list[str] = []
    probe = block_module._probe_loss
    monkeypatch.setattr(block_module, "_probe_loss", lambda m, block, images: probed.append(block) or probe(m, block, images))
    schedule = load_schedule(block_schedule(names, 0.67, "sensitivity"))

    def removed(net: nn.Module, images: Calibration) -> list[str]:
        capsys.readouterr()
        return prune_one_shot(copy.deepcopy(net), schedule, calibration=images, cache_dir=tmp_path).blocks_removed

    first = removed(model, calibration)
    err = capsys.readouterr().err
    assert probed == names and f"ranking {len(names)} residual blocks by sensitivity" in err
    assert all(f"block {i}/{len(names)}: {name}" in err for i, name in enumerate(names, 1))
    probed.clear()
    assert removed(model, calibration) == first and probed == []  # read back, nothing probed
    assert capsys.readouterr().err == ""
    # Other images, or other weights, are another ranking.
    flipped = Calibration(calibration.images.flip(0)[:15], calibration.labels.flip(0)[:15])
    removed(model, flipped)
    assert probed == names
    probed.clear()
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        retrained.linear.bias.add_(0.01)
    removed(retrained, calibration)
    assert probed == names


@pytest.mark.parametrize("text", ["[1, 2]", "{}", "not json", '{"blocks": ["layer1.1"], "scores": [NaN]}',
                                  '{"blocks": ["layer1.2"], "scores": [1.0]}'])
def test_a_cached_ranking_that_is_not_one_of_these_blocks_is_computed_again(tmp_path: Path, text: str) -> None:
    from pipeline.pruning.blocks import _read_scores

    (tmp_path / "entry.json").write_text(text)
    assert _read_scores(tmp_path / "entry.json", ["layer1.1"]) is None
    (tmp_path / "entry.json").write_text('{"blocks": ["layer1.1"], "scores": [0.5]}')
    assert _read_scores(tmp_path / "entry.json", ["layer1.1"]) == [0.5]


def test_sensitivity_without_train_images_is_one_error_line() -> None:
    with pytest.raises(ScheduleError, match="criterion sensitivity ranks blocks on train images") as info:
        prune_one_shot(create_model("resnet20_cifar"), load_schedule(block_schedule(["layer1.1", "layer1.2"], 0.5, "sensitivity")))
    assert "\n" not in str(info.value)


def test_removed_blocks_leave_the_onnx_and_the_counts(settings, shared_dir: Path, tmp_path: Path) -> None:
    model = pretrained("resnet20_cifar", shared_dir)
    before_onnx = export_onnx(copy.deepcopy(model), tmp_path / "dense.onnx")
    macs_before, params_before = count_macs_params(model)
    report = prune_one_shot(model, load_schedule(block_schedule(
        ["layer1.1", "layer3.1", "layer3.2"], 0.67, "random")))
    removed = report.blocks_removed
    assert len(removed) == 2
    data = load_data(settings.data_path, settings.cache_dir)
    exported = export_onnx(model, tmp_path / "pruned.onnx", check_images=data.test.images[:32])
    assert exported.max_abs_diff <= 1e-3 and exported.argmax_agreement == 1.0
    assert conv_nodes(before_onnx.path) - conv_nodes(exported.path) == 2 * len(removed)
    # MACs: each removed block had two 3x3 convs of its stage's width at its stage's resolution.
    stage_macs = {"layer1": 32 * 32 * 16 * 16 * 9, "layer3": 8 * 8 * 64 * 64 * 9}
    assert report.macs_before - report.macs_after == sum(2 * stage_macs[b.split(".")[0]] for b in removed)
    assert report.macs_after == count_macs_params(model)[0] and report.macs_before == macs_before
    width = {"layer1": 16, "layer3": 64}
    # Deployed parameters (BatchNorm folded): per removed block two 3x3 convs and two conv biases.
    assert params_before - report.params_after == sum(2 * (9 * width[b[:6]] ** 2 + width[b[:6]]) for b in removed)
    kept = {"layer1": 3, "layer2": 3, "layer3": 3}
    for b in removed:
        kept[b.split(".")[0]] -= 1
    assert arch_signature(model) == f"16x{1 + 2 * kept['layer1']}-32x{2 * kept['layer2']}-64x{2 * kept['layer3']}"
    assert report.arch_after == arch_signature(model) != report.arch_before


@pytest.mark.parametrize("block, fragment", [("layer2.0", "is a downsampling block"),
                                             ("module.layer3.0", "is a downsampling block"),
                                             ("layer1.1.conv1", "is not a residual block"),
                                             ("layer4.1", "is not a residual block")])
def test_blocks_that_cannot_go_are_one_error_line(block: str, fragment: str) -> None:
    schedule = load_schedule(block_schedule(["layer1.1", block], 0.5, "l1_bn2"))
    with pytest.raises(ScheduleError) as info:
        validate_schedule(schedule, create_model("resnet56_cifar"))
    message = str(info.value)
    assert fragment in message and f"blocks[1]={block!r}" in message and "\n" not in message


def test_blocks_and_filters_in_one_schedule_with_round_to(shared_dir: Path, settings) -> None:
    model = pretrained("resnet20_cifar", shared_dir)
    blocks = identity_blocks(model)
    gammas = {b: model.get_submodule(b).bn2.weight.abs().mean().item() for b in blocks}
    expected = sorted(sorted(blocks, key=gammas.__getitem__)[:3])
    conv1 = [f"{b}.conv1.weight" for b in blocks]
    filters = (f"  filters:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
               f"    desired_sparsity: 0.6\n    weights: [{', '.join(conv1)}]\n")
    text = block_schedule(blocks, 0.5, "l1_bn2", filters, "  - pruner: {instance_name: filters}\n    epochs: [0]\n",
                          header="round_to: 4\n")
    schedule = load_schedule(text, ["block_pruner.desired_sparsity=0.45"])
    assert schedule.pruners["block_pruner"].args["desired_sparsity"] == 0.45
    report = prune_one_shot(model, schedule)
    assert sorted(report.blocks_removed) == expected
    assert report.pruners_skipped == [f"filters: {', '.join(w for w in conv1 if w[:8] in expected)}"]
    for layer in report.layers:
        width = {"layer1": 16, "layer2": 32, "layer3": 64}[layer.name[:6]]
        if layer.name[:8] in expected:
            assert layer.channels_after == 0
        else:
            kept = width - int(np.floor(0.6 * width))
            assert layer.channels_after == -(-kept // 4) * 4 == model.get_submodule(layer.name).out_channels
    assert "blocks removed: " + ", ".join(expected) in report.table()
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    assert torch.isfinite(model(images)).all()
    # The retraining scheduler, built on the pruned model, neither fails on nor prunes the removed blocks.
    hooks = CompressionScheduler(model, schedule, after=report)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    assert not hooks.on_epoch_begin(0, optimizer) and sorted(removed_blocks(model)) == expected
    assert hooks.report().blocks_removed == []


def test_sweep_parameter_and_shipped_schedules() -> None:
    base = load_schedule(SCHEDULES / "resnet56_blocks.yaml")
    mapped = map_params({"block_pruner_desired_sparsity": 0.3}, SCHEDULES / "resnet56_blocks.yaml")
    assert mapped.overrides == [Override("block_pruner", "desired_sparsity", 0.3)]
    model = create_model("resnet56_cifar")
    for name in ("resnet56_blocks.yaml", "resnet56_depth_width.yaml"):
        validate_schedule(load_schedule(SCHEDULES / name), model)
    listed = base.pruners["block_pruner"].args["blocks"]
    assert [b.removeprefix("module.") for b in listed] == identity_blocks(model)


def test_schedule_show_lists_removed_and_kept_blocks(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from tests.test_schedule_cli import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "schedule", "show", str(SCHEDULES / "resnet56_depth_width.yaml"),
                             "--set", "block_pruner.criterion=l1_bn2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert len(report["blocks_removed"]) == 8 and len(report["blocks_kept"]) == 17
    assert len(report["pruners_skipped"]) >= 1
    assert all(row["channels_after"] % 8 == 0 for row in report["layers"])
    # criterion sensitivity ranks on the pretrained weights and train images of --data.
    path = tmp_path / "resnet20_blocks.yaml"
    path.write_text(block_schedule(["layer1.1", "layer1.2", "layer3.1"], 0.67, "sensitivity"))
    code, out, err = run_cli(monkeypatch, capsys, "schedule", "show", str(path), "--model", "resnet20_cifar",
                             "--shared", str(settings.shared_dir), "--data", str(settings.data),
                             "--cache-dir", str(settings.cache_dir))
    assert code == 0, err
    assert "blocks removed: " in out and "blocks kept: " in out and "architecture: 16x" in out
    # The ranking says that it computes, block by block; the second show reads it from the cache.
    assert "ranking 3 residual blocks by sensitivity" in err and "block 3/3" in err
    again = run_cli(monkeypatch, capsys, "schedule", "show", str(path), "--model", "resnet20_cifar",
                    "--shared", str(settings.shared_dir), "--data", str(settings.data),
                    "--cache-dir", str(settings.cache_dir))
    assert again[:2] == (0, out) and "ranking" not in again[2] and "block 1/3" not in again[2]
    assert "sensitivity" in (SCHEDULES / "resnet56_blocks.yaml").read_text()


def test_block_sensitivity_removes_each_block_alone(settings, shared_dir: Path, tmp_path: Path) -> None:
    from pipeline import sensitivity as sense

    model = pretrained("resnet20_cifar", shared_dir)
    data = load_data(settings.data_path, settings.cache_dir)
    blocks = sense.candidate_layers(model, sense.BLOCKS, "layer3.*")
    assert blocks == ["layer3.1", "layer3.2"]
    rows = sense.run_sensitivity(model, blocks, sense.BLOCK_LEVELS, sense.BLOCKS, tmp_path / "s.csv",
                                 sense.accuracy_on(data.test.head(200)), sense.openvino_latency(iters=20))
    assert [(r.layer, r.level, r.channels_kept) for r in rows] == [
        ("layer3.1", 0.0, 1), ("layer3.1", 1.0, 0), ("layer3.2", 0.0, 1), ("layer3.2", 1.0, 0)]
    assert all(r.latency_ms > 0 and 0 <= r.top1 <= 100 for r in rows)
    assert rows[1].top1 != rows[0].top1 and removed_blocks(model) == []
