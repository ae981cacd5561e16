"""Gradual and fine-grained pruners: AGP ramp, masks under SGD, structured AGP removal, thresholds,
FPGM / BN-scale ranking, and the sparsity report that tells zeros from removed channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import ScheduleError
from pipeline.models import create_model
from pipeline.pruning import CompressionScheduler, load_schedule, validate_schedule
from pipeline.pruning.agp import AGPRamp
from pipeline.pruning.criteria import CRITERIA
from pipeline.pruning.sparsity import measure_sparsity, weight_shapes
from pipeline.pruning.structured import kept_count


def _schedule(pruner: str, policy: str) -> str:
    return f"version: 1\npruners:\n  p:\n{pruner}\npolicies:\n  - pruner: {{instance_name: p}}\n{policy}\n"


def _fine_agp(initial: float, final: float, weights: list[str], start: int, end: int, freq: int) -> str:
    return _schedule(
        f"    class: AutomatedGradualPruner\n    initial_sparsity: {initial}\n    final_sparsity: {final}\n"
        f"    weights: [{', '.join(weights)}]",
        f"    starting_epoch: {start}\n    ending_epoch: {end}\n    frequency: {freq}")


def _sgd_steps(model: nn.Module, scheduler: CompressionScheduler, optimizer: torch.optim.Optimizer,
               epoch: int, steps: int, reapply: bool = True) -> None:
    torch.manual_seed(epoch)
    for step in range(steps):
        # Tiny 16x16 batches: the steps only need real gradients and momentum, not accuracy.
        images, labels = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        if reapply:
            scheduler.on_minibatch_end(epoch, step, steps, optimizer)


def _zeros(tensor: torch.Tensor) -> int:
    return int((tensor == 0).sum())


def test_agp_ramp_is_the_cubic_formula() -> None:
    s_i, s_f, t0, end, dt = 0.05, 0.8, 3, 14, 2
    ramp = AGPRamp(s_i, s_f, t0, end, dt)
    n_dt = ((end - t0 - 1) // dt) * dt  # last step at t0 + n*dt, the last epoch before `end`
    assert ramp.steps() == list(range(t0, t0 + n_dt + 1, dt)) == [3, 5, 7, 9, 11, 13]
    for t in ramp.steps():
        assert ramp.target(t) == pytest.approx(s_f + (s_i - s_f) * (1 - (t - t0) / n_dt) ** 3, abs=1e-12)
    assert ramp.target(t0) == pytest.approx(s_i)
    assert ramp.target(ramp.last_epoch) == pytest.approx(s_f)
    increments = [ramp.target(b) - ramp.target(a) for a, b in zip(ramp.steps(), ramp.steps()[1:])]
    assert all(x > y for x, y in zip(increments, increments[1:]))  # prunes fastest at the start


def test_agp_pruner_reaches_the_ramp_sparsity_at_every_step() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar")
    weights = ["layer3.1.conv1.weight", "module.layer2.2.conv2.weight", "linear.weight"]
    schedule = load_schedule(_fine_agp(0.1, 0.75, weights, 1, 9, 2))
    scheduler = CompressionScheduler(model, schedule)
    ramp = AGPRamp(0.1, 0.75, 1, 9, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    params = dict(model.named_parameters())
    previous = 0.0
    for epoch in range(10):
        scheduler.on_epoch_begin(epoch, optimizer)
        done = [t for t in ramp.steps() if t <= epoch]  # between steps the sparsity holds
        expected = ramp.target(done[-1]) if done else 0.0
        for name in ("layer3.1.conv1.weight", "layer2.2.conv2.weight", "linear.weight"):
            weight = params[name]
            assert _zeros(weight) == round(expected * weight.numel()), (epoch, name)
        assert expected >= previous
        previous = expected
        _sgd_steps(model, scheduler, optimizer, epoch, steps=1)
        scheduler.on_epoch_end(epoch, optimizer)
    assert previous == pytest.approx(0.75)
    assert _zeros(params["layer3.2.conv1.weight"]) == 0  # not listed, untouched


def test_masks_stay_applied_after_sgd_steps_with_momentum() -> None:
    torch.manual_seed(1)
    model = create_model("resnet20_cifar")
    name = "layer1.1.conv1.weight"
    schedule = load_schedule(_fine_agp(0.5, 0.6, [name], 0, 3, 1))
    scheduler = CompressionScheduler(model, schedule)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler.on_epoch_begin(0, optimizer)
    weight = dict(model.named_parameters())[name]
    masked = weight.detach() == 0
    assert int(masked.sum()) == round(0.5 * weight.numel())
    before = weight.detach().clone()
    _sgd_steps(model, scheduler, optimizer, epoch=0, steps=4)
    assert torch.all(weight.detach()[masked] == 0)  # exactly zero, not merely small
    assert not torch.equal(weight.detach()[~masked], before[~masked])  # the rest did train

    # The same steps without re-applying the masks regrow the zeros: the hook is what keeps them.
    _sgd_steps(model, scheduler, optimizer, epoch=0, steps=2, reapply=False)
    assert int((weight.detach()[masked] != 0).sum()) > 0


def _structured_agp(group_type: str, weights: list[str], criterion: str = "l1") -> str:
    return _schedule(
        f"    class: L1RankedStructureParameterPruner_AGP\n    group_type: {group_type}\n"
        f"    criterion: {criterion}\n    initial_sparsity: 0.1\n    final_sparsity: 0.5\n"
        f"    weights: [{', '.join(weights)}]",
        "    starting_epoch: 0\n    ending_epoch: 4\n    frequency: 1")


@pytest.mark.parametrize("group_type, weight, criterion", [
    ("Filters", "layer1.0.conv1.weight", "l1"),
    ("Channels", "layer2.1.conv2.weight", "bn_scale"),
])
def test_structured_agp_masks_on_the_ramp_then_removes(group_type: str, weight: str, criterion: str) -> None:
    torch.manual_seed(2)
    model = create_model("resnet20_cifar")
    dim = 0 if group_type == "Filters" else 1
    shapes = weight_shapes(model)
    dense = shapes[weight][dim]
    scheduler = CompressionScheduler(model, load_schedule(_structured_agp(group_type, [weight], criterion)))
    ramp = AGPRamp(0.1, 0.5, 0, 4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    removed_at = None
    masked_before: set[int] = set()
    for epoch in range(4):
        scheduler.on_epoch_begin(epoch, optimizer)
        tensor = dict(model.named_parameters())[weight].detach()
        if removed_at is None:
            assert tensor.shape[dim] == dense  # masked only, not removed yet
            zero_structures = {i for i in range(dense) if torch.all(tensor.select(dim, i) == 0)}
            assert len(zero_structures) == dense - kept_count(dense, ramp.target(epoch), None)
            assert masked_before <= zero_structures  # a masked structure stays masked
            masked_before = zero_structures
        _sgd_steps(model, scheduler, optimizer, epoch, steps=1)
        if scheduler.on_epoch_end(epoch, optimizer):
            removed_at = epoch
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    assert removed_at == 3  # the policy's last epoch (ending_epoch - 1)
    after = weight_shapes(model)
    assert after[weight][dim] == kept_count(dense, 0.5, None) == 8 if dense == 16 else 16
    report = measure_sparsity(model, shapes)
    row = next(w for w in report.weights if w.name == weight)
    assert row.element_sparsity == 0.0 and row.effective_sparsity == pytest.approx(0.5)
    assert report.removed_fraction > 0 and report.element_sparsity == 0.0
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_structured_agp_trains_end_to_end_with_the_trainer(settings) -> None:
    from pipeline.data import load_data
    from pipeline.training import TrainConfig, train

    data = load_data(settings.data_path, settings.cache_dir, val_fraction=0.02, subset=64)
    model = create_model("resnet20_cifar")
    weight = "layer3.1.conv1.weight"
    scheduler = CompressionScheduler(model, load_schedule(_structured_agp("Filters", [weight])))
    report = train(model, data, TrainConfig(epochs=4, batch_size=16, max_steps_per_epoch=1), hooks=scheduler)
    assert report.epochs_run == 4
    assert model.get_submodule("layer3.1.conv1").out_channels == 32
    assert model.get_submodule("layer3.1.conv2").in_channels == 32
    assert scheduler.report().layers[0].channels_after == 32


def test_magnitude_thresholds_give_the_expected_zeros() -> None:
    torch.manual_seed(3)
    model = create_model("resnet20_cifar")
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    text = _schedule("    class: MagnitudeParameterPruner\n"
                     "    thresholds: {'*': 0.02, module.layer2.0.conv1.weight: 0.1}", "    epochs: [0]")
    CompressionScheduler(model, load_schedule(text)).on_epoch_begin(0)
    for name, param in model.named_parameters():
        if param.dim() >= 2:
            threshold = 0.1 if name == "layer2.0.conv1.weight" else 0.02
            assert _zeros(param) == int((reference[name].abs() <= threshold).sum()), name
            assert _zeros(param) > 0
        else:  # BatchNorm and biases are never pruned by '*'
            assert torch.equal(param.detach(), reference[name]), name


def test_sensitivity_pruner_threshold_is_sensitivity_times_std() -> None:
    torch.manual_seed(4)
    model = create_model("resnet20_cifar")
    name = "layer1.2.conv2.weight"
    reference = dict(model.named_parameters())[name].detach().clone()
    text = _schedule(f"    class: SensitivityPruner\n    sensitivities: {{{name}: 0.5}}", "    epochs: [0]")
    CompressionScheduler(model, load_schedule(text)).on_epoch_begin(0)
    threshold = 0.5 * float(reference.std())
    assert _zeros(dict(model.named_parameters())[name]) == int((reference.abs() <= threshold).sum())
    assert _zeros(dict(model.named_parameters())["layer1.2.conv1.weight"]) == 0


def test_fpgm_ranks_by_distance_to_the_other_filters() -> None:
    conv = nn.Conv2d(1, 4, kernel_size=(1, 2), bias=False)
    # Filters as 2-D points: three form a triangle, one far away with the LARGEST norm among the
    # three close ones being the middle one. FPGM prunes the most central point first; L1 prunes
    # the smallest.
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [8.0, 8.0]])
    with torch.no_grad():
        conv.weight.copy_(points.view(4, 1, 1, 2))
    model = nn.Sequential(conv)
    distances = torch.cdist(points, points).sum(dim=1)
    scores = CRITERIA["fpgm"]()(model, "0", "Filters")
    assert torch.allclose(scores, distances)
    assert int(scores.argmin()) == 2  # the central point, although its |w| is not the smallest
    assert int(CRITERIA["l1"]()(model, "0", "Filters").argmin()) in (0, 1)
    channels = CRITERIA["fpgm"]()(model, "0", "Channels")  # 1 input channel: a single structure
    assert channels.shape == (1,)


def test_bn_scale_ranks_by_the_adjacent_batchnorm_gamma() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    gammas = torch.tensor([0.5, -2.0, 0.1, 1.0])
    with torch.no_grad():
        model[1].weight.copy_(gammas)
    assert torch.equal(CRITERIA["bn_scale"]()(model, "0", "Filters"), gammas.abs())
    assert torch.equal(CRITERIA["bn_scale"]()(model, "3", "Channels"), gammas.abs())  # through the ReLU
    with pytest.raises(ScheduleError, match="no BatchNorm follows"):
        CRITERIA["bn_scale"]()(model, "3", "Filters")


@pytest.mark.parametrize("pruner, policy, message", [
    ("    class: AutomatedGradualPruner\n    initial_sparsity: 0.5\n    final_sparsity: 0.2\n"
     "    weights: [layer1.0.conv1.weight]", "    starting_epoch: 0\n    ending_epoch: 5",
     "must exceed initial_sparsity"),
    ("    class: MagnitudeParameterPruner\n    thresholds: {layer1.0.bn1.weight: 0.1}", "    epochs: [0]",
     "not a conv or linear weight"),
    ("    class: SensitivityPruner\n    sensitivities: {'*': -1}", "    epochs: [0]", "not a number >= 0"),
    ("    class: L1RankedStructureParameterPruner_AGP\n    group_type: Filters\n    criterion: taylor\n"
     "    initial_sparsity: 0.1\n    final_sparsity: 0.5\n    weights: [layer1.0.conv1.weight]",
     "    starting_epoch: 0\n    ending_epoch: 5", "use one of bn_scale, fpgm, l1, l2"),
    ("    class: ActivationAPoZRankedFilterPruner_AGP\n    group_type: Filters",
     "    epochs: [0]", "use one of .*AutomatedGradualPruner.*SensitivityPruner"),
])
def test_invalid_entries_are_one_line_schedule_errors(pruner: str, policy: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as caught:
        validate_schedule(load_schedule(_schedule(pruner, policy)), create_model("resnet20_cifar"))
    assert "\n" not in str(caught.value)


def test_agp_policy_without_a_ramp_is_refused() -> None:
    schedule = load_schedule(_fine_agp(0.1, 0.5, ["layer1.0.conv1.weight"], 0, 1, 1))
    # Refused when the schedule is validated, before any work starts.
    with pytest.raises(ScheduleError, match="room for one pruning step only"):
        validate_schedule(schedule, create_model("resnet20_cifar"))
