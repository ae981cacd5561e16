"""Every schedule in schedules/ parses, validates against its model, prunes, and the model still runs.

One-shot schedules go through ``prune_one_shot``; gradual ones through a ``CompressionScheduler``
driven over their epochs (hooks only: the ramp and the removal do not need real training).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.models import create_model
from pipeline.pruning import (CompressionScheduler, arch_signature, load_schedule, prune_one_shot,
                              validate_schedule)
from pipeline.pruning.sparsity import measure_sparsity, weight_shapes
from pipeline.pruning.structured import kept_count

SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"
MINE = ["resnet56_channel_rank.yaml", "resnet56_agp_fine.yaml", "resnet56_structured_agp.yaml",
        "resnet56_mixed.yaml", "resnet56b_downsample.yaml"]


def _model(file_name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet56_cifar", shortcut="B" if file_name.startswith("resnet56b") else "A")


def _runs(model: torch.nn.Module) -> None:
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _drive(model: torch.nn.Module, schedule_file: str, epochs: int) -> CompressionScheduler:
    """Fire the schedule's hooks epoch by epoch, as the trainer does (no optimizer steps)."""
    scheduler = CompressionScheduler(model, load_schedule(SCHEDULES / schedule_file))
    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch)
        scheduler.on_minibatch_end(epoch, 0, 1)
        scheduler.on_epoch_end(epoch)
    return scheduler


@pytest.mark.parametrize("file_name", MINE)
def test_schedule_has_an_intent_header_and_validates(file_name: str) -> None:
    text = (SCHEDULES / file_name).read_text()
    header = [line for line in text.splitlines()[:20] if line.startswith("#")]
    assert len(header) >= 3 and any("Intent" in line for line in header), file_name
    validate_schedule(load_schedule(SCHEDULES / file_name), _model(file_name))


def test_channel_rank_gives_the_filter_schedule_architecture() -> None:
    by_channels, by_filters = _model("a"), _model("a")
    prune_one_shot(by_channels, load_schedule(SCHEDULES / "resnet56_channel_rank.yaml"))
    prune_one_shot(by_filters, load_schedule(SCHEDULES / "resnet56_filter_rank.yaml"))
    assert arch_signature(by_channels) == arch_signature(by_filters) != arch_signature(_model("a"))
    assert by_channels.layer1[0].conv2.in_channels == kept_count(16, 0.7, None) == 5
    _runs(by_channels)


def test_mixed_prunes_filters_and_channels_rounded_to_8() -> None:
    model = _model("resnet56_mixed.yaml")
    report = prune_one_shot(model, load_schedule(SCHEDULES / "resnet56_mixed.yaml"))
    kinds = {layer.group_type for layer in report.layers}
    assert kinds == {"Filters", "Channels"}
    assert all(layer.channels_after % 8 == 0 and layer.channels_after < layer.channels_before
               for layer in report.layers)
    assert model.layer2[1].conv2.in_channels == model.layer2[1].conv1.out_channels == 16
    assert report.macs_after < report.macs_before
    _runs(model)


def test_downsample_schedule_narrows_the_option_b_stream() -> None:
    model = _model("resnet56b_downsample.yaml")
    prune_one_shot(model, load_schedule(SCHEDULES / "resnet56b_downsample.yaml"))
    assert model.layer2[0].downsample[0].out_channels == 24
    assert all(block.conv2.out_channels == 24 and block.conv1.in_channels in (24, 16)
               for block in model.layer2)
    assert model.layer3[0].conv1.in_channels == model.layer3[0].downsample[0].in_channels == 24
    assert model.linear.in_features == 48
    assert model.layer1[0].conv1.in_channels == 16  # stage 1 has no downsample: untouched
    _runs(model)


def test_agp_fine_reaches_70_percent_zeros_without_removing_anything() -> None:
    model = _model("resnet56_agp_fine.yaml")
    shapes = weight_shapes(model)
    _drive(model, "resnet56_agp_fine.yaml", epochs=10)
    report = measure_sparsity(model, shapes)
    block_convs = [w for w in report.weights if w.name.startswith("layer")]
    assert len(block_convs) == 54
    for w in block_convs:
        assert abs(w.element_sparsity - 0.7) <= 1 / w.elements, w.name
    assert report.removed_fraction == 0.0  # fine-grained: nothing removed
    assert next(w for w in report.weights if w.name == "conv1.weight").element_sparsity == 0.0
    _runs(model)


def test_structured_agp_removes_the_ramped_filters_at_the_end() -> None:
    model = _model("resnet56_structured_agp.yaml")
    scheduler = _drive(model, "resnet56_structured_agp.yaml", epochs=10)
    assert model.layer1[0].conv1.out_channels == kept_count(16, 0.7, None) == 5
    assert model.layer2[1].conv1.out_channels == kept_count(32, 0.6, None) == 13
    assert model.layer3[1].conv1.out_channels == kept_count(64, 0.4, None) == 39
    assert model.layer2[0].conv1.out_channels == 32  # sensitive block left alone
    layers = scheduler.report().layers
    assert all(layer.channels_after < layer.channels_before and layer.element_sparsity == 0.0
               for layer in layers)
    _runs(model)
