"""pipeline.training: evaluation of a pretrained model, SGD steps, hooks, optimizer rebuild, early stop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.data import DataSplits, Split, load_data, to_tensor_batch
from pipeline.models import create_model, load_checkpoint
from pipeline.training import Accuracy, TrainConfig, TrainingHooks, evaluate, train


@pytest.fixture(scope="module")
def splits(mini_data: Path, cache_dir: Path) -> DataSplits:
    return load_data(mini_data, cache_dir, val_fraction=0.1, seed=0)


@pytest.fixture(scope="module")
def small_splits(splits: DataSplits) -> DataSplits:
    """32 train and 20 val images: enough for a few steps and a validation pass (CI has 2 cores)."""
    val = Split(splits.val.images[:20], splits.val.labels[:20], "val")
    train = Split(splits.train.images[:32], splits.train.labels[:32], "train")
    return DataSplits(train=train, val=val, test=splits.test, classes=splits.classes)


@pytest.fixture
def resnet20(checkpoint_resnet20: Path) -> nn.Module:
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    return model


class RecordingHooks:
    """Records every call; asks for an optimizer rebuild when ``change(call)`` returns True."""

    def __init__(self, change=None) -> None:
        self.calls: list[tuple] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.change = change or (lambda call: False)

    def on_epoch_begin(self, epoch, optimizer) -> bool:
        self.calls.append(("begin", epoch))
        self.optimizers.append(optimizer)
        return self.change(self.calls[-1])

    def on_minibatch_end(self, epoch, step, steps_per_epoch, optimizer) -> bool:
        self.calls.append(("minibatch", epoch, step, steps_per_epoch))
        self.optimizers.append(optimizer)
        return self.change(self.calls[-1])

    def on_epoch_end(self, epoch, optimizer) -> bool:
        self.calls.append(("end", epoch))
        self.optimizers.append(optimizer)
        return False


def test_pretrained_resnet20_is_well_above_chance(resnet20: nn.Module, splits: DataSplits) -> None:
    accuracy = evaluate(resnet20, splits.test)
    chance = 100.0 / len(splits.classes)
    assert accuracy.count == len(splits.test)
    assert accuracy.top1 > 3 * chance
    assert accuracy.top1 <= accuracy.top5 <= 100.0
    assert 0 < accuracy.loss < torch.log(torch.tensor(float(len(splits.classes)))).item()
    assert resnet20.training  # evaluate works on a copy and leaves the caller's mode alone


def test_evaluate_matches_a_plain_forward_pass(resnet20: nn.Module, splits: DataSplits) -> None:
    """The folded, channels-last evaluation path counts exactly what the plain model predicts."""
    subset = Split(splits.test.images[:100], splits.test.labels[:100], "t")
    with torch.inference_mode():
        logits = resnet20.eval()(torch.from_numpy(to_tensor_batch(subset.images)))
    labels = torch.from_numpy(subset.labels)
    expected_top1 = 100.0 * logits.argmax(1).eq(labels).float().mean().item()
    expected_loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = evaluate(resnet20, subset, batch_size=32)
    assert accuracy.top1 == pytest.approx(expected_top1, abs=100.0 / len(subset) + 1e-9)
    assert accuracy.loss == pytest.approx(expected_loss, rel=1e-3)
    assert evaluate(resnet20, Split(subset.images[:0], subset.labels[:0], "e")).count == 0
    half = evaluate(resnet20, subset, batch_size=32, precision="bf16")
    assert half.top1 > 3 * 100.0 / len(splits.classes)
    assert half.loss == pytest.approx(expected_loss, rel=0.1)  # bf16 keeps ~3 significant digits


def test_a_few_steps_fit_the_training_batch(resnet20: nn.Module, small_splits: DataSplits) -> None:
    before = evaluate(resnet20, small_splits.train).loss
    weights = resnet20.layer1[0].conv1.weight.detach().clone()
    config = TrainConfig(epochs=2, lr=0.02, batch_size=32, max_steps_per_epoch=2)
    report = train(resnet20, small_splits, config)
    after = evaluate(resnet20, small_splits.train).loss
    assert after < before
    assert not torch.equal(weights, resnet20.layer1[0].conv1.weight)
    assert report.epochs_run == 2 and len(report.history) == 2 and not report.stopped_early
    assert all(a.count == len(small_splits.val) for a in report.history)
    assert report.seconds > 0


def test_training_is_repeatable_for_a_seed(checkpoint_resnet20: Path, small_splits: DataSplits) -> None:
    def run(seed: int) -> torch.Tensor:
        model = create_model("resnet20_cifar")
        load_checkpoint(model, checkpoint_resnet20)
        train(model, small_splits, TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=1, seed=seed))
        return model.linear.weight.detach()

    first = run(0)
    assert torch.allclose(first, run(0), atol=1e-6)
    assert not torch.allclose(first, run(1), atol=1e-6)


def test_hooks_are_called_per_epoch_and_minibatch(resnet20: nn.Module, small_splits: DataSplits) -> None:
    hooks = RecordingHooks()
    assert isinstance(hooks, TrainingHooks)
    epochs, steps = 2, 2
    train(resnet20, small_splits, TrainConfig(epochs=epochs, batch_size=8, max_steps_per_epoch=steps), hooks)
    expected = []
    for epoch in range(epochs):
        expected.append(("begin", epoch))
        expected += [("minibatch", epoch, step, steps) for step in range(steps)]
        expected.append(("end", epoch))
    assert hooks.calls == expected
    assert len({id(o) for o in hooks.optimizers}) == 1  # no structure change, no rebuild


def _narrow_block(block: nn.Module, drop: int) -> None:
    """Physically remove the first ``drop`` channels between a basic block's conv1 and conv2."""
    keep = torch.arange(drop, block.conv1.out_channels)
    conv1 = nn.Conv2d(block.conv1.in_channels, len(keep), 3, block.conv1.stride, 1, bias=False)
    conv1.weight.data = block.conv1.weight.data[keep].clone()
    bn1 = nn.BatchNorm2d(len(keep))
    for name in ("weight", "bias"):
        getattr(bn1, name).data = getattr(block.bn1, name).data[keep].clone()
    for name in ("running_mean", "running_var"):
        getattr(bn1, name).copy_(getattr(block.bn1, name)[keep])
    conv2 = nn.Conv2d(len(keep), block.conv2.out_channels, 3, 1, 1, bias=False)
    conv2.weight.data = block.conv2.weight.data[:, keep].clone()
    block.conv1, block.bn1, block.conv2 = conv1, bn1, conv2


@pytest.mark.parametrize("changing_call", [("begin", 0), ("minibatch", 0, 0, 3)])
def test_structure_change_rebuilds_optimizer_keeping_lr(resnet20: nn.Module, small_splits: DataSplits,
                                                        changing_call: tuple) -> None:
    block = resnet20.layer2[0]
    changed_lr = 0.0123
    narrowed: list[torch.Tensor] = []

    def change(call: tuple) -> bool:
        if call != changing_call:
            return False
        _narrow_block(block, drop=4)
        narrowed.append(block.conv1.weight.detach().clone())
        hooks.optimizers[-1].param_groups[0]["lr"] = changed_lr  # as an lr scheduler would
        return True

    hooks = RecordingHooks(change)
    train(resnet20, small_splits, TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=3), hooks)
    at = hooks.calls.index(changing_call)
    first, later = hooks.optimizers[at], hooks.optimizers[at + 1]
    assert later is not first
    assert later.param_groups[0]["lr"] == changed_lr
    assert later.param_groups[0]["momentum"] == first.param_groups[0]["momentum"]
    new_params = {id(p) for p in later.param_groups[0]["params"]}
    assert id(block.conv1.weight) in new_params and len(new_params) == len(list(resnet20.parameters()))
    assert block.conv1.weight.shape[0] == block.conv2.weight.shape[1] == block.bn1.num_features
    # The steps after the rebuild trained the new, narrower layer.
    assert not torch.equal(narrowed[0], block.conv1.weight)
    assert resnet20(torch.zeros(2, 3, 32, 32)).shape == (2, len(small_splits.classes))


def test_on_epoch_false_stops_early(resnet20: nn.Module, small_splits: DataSplits) -> None:
    seen: list[tuple[int, Accuracy]] = []

    def on_epoch(epoch: int, accuracy: Accuracy) -> bool:
        seen.append((epoch, accuracy))
        return epoch < 1

    report = train(resnet20, small_splits, TrainConfig(epochs=5, batch_size=8, max_steps_per_epoch=1),
                   on_epoch=on_epoch)
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert report.epochs_run == 2 and report.stopped_early
    assert [a for _, a in seen] == report.history
    assert seen[0][1].count == len(small_splits.val)


def test_cosine_anneal_scales_every_step_and_hands_the_schedule_its_epoch_lr(
        resnet20: nn.Module, small_splits: DataSplits) -> None:
    step_lrs: list[float] = []
    end_lrs: list[float] = []

    class HalvingHooks(RecordingHooks):
        def on_minibatch_end(self, epoch, step, steps_per_epoch, optimizer) -> bool:
            step_lrs.append(optimizer.param_groups[0]["lr"])  # the lr the step just used
            return False

        def on_epoch_end(self, epoch, optimizer) -> bool:
            end_lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.param_groups[0]["lr"] /= 2  # as a schedule's StepLR(step_size=1, gamma=0.5) would
            return False

    config = TrainConfig(epochs=2, lr=0.1, batch_size=8, max_steps_per_epoch=2, lr_anneal="cosine")
    train(resnet20, small_splits, config, HalvingHooks())
    cosine = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert step_lrs == pytest.approx([0.1 * cosine[0], 0.1 * cosine[1], 0.05 * cosine[2], 0.05 * cosine[3]])
    assert end_lrs == pytest.approx([0.1, 0.05])


def test_unknown_lr_anneal_is_refused() -> None:
    with pytest.raises(ValueError, match="lr_anneal='linear': use one of none, cosine"):
        TrainConfig(epochs=1, lr_anneal="linear")
