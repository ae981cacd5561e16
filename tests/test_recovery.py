"""Adaptive BN (re-estimated BatchNorm statistics) and knowledge distillation while retraining."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.batchnorm import Calibration, recalibrate_bn
from pipeline.data import load_data
from pipeline.distill import Distillation, kd_loss
from pipeline.errors import SweepError
from pipeline.flow import RunConfig, produce
from pipeline.models import create_model, load_checkpoint
from pipeline.search.mapping import map_params
from pipeline.search.trials import run_config_for

SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"


def test_recalibration_changes_running_statistics_and_no_weight(settings, checkpoint_resnet20: Path) -> None:
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    model.layer2[1] = nn.Identity()  # a pruned network: later BatchNorms see shifted inputs
    model.eval()
    images = Calibration.from_split(load_data(settings.data_path, settings.cache_dir).train, 192).images
    weights = {k: v.clone() for k, v in model.named_parameters()}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    recalibrate_bn(model, images, batch_size=64)
    assert not model.training
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(not torch.allclose(after[k], stats[k]) for k in stats)
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    # The statistics are the mean over the three batches of each layer's batch statistics.
    captured: list[torch.Tensor] = []
    first = model.bn1
    handle = first.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].mean(dim=(0, 2, 3))))
    recalibrate_bn(model, images, batch_size=64)
    handle.remove()
    assert len(captured) == 3
    assert torch.allclose(first.running_mean, torch.stack(captured).mean(dim=0), atol=1e-5)


def test_kd_loss_equals_a_hand_computation() -> None:
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    teacher = torch.tensor([[1.5, 1.0, -0.5], [0.0, -1.0, 2.0]])
    labels = torch.tensor([0, 2])
    w, t = 0.7, 4.0
    ce = kl = 0.0
    for s_row, t_row, label in zip(student.tolist(), teacher.tolist(), labels.tolist()):
        log_z = math.log(sum(math.exp(v) for v in s_row))
        ce += -(s_row[label] - log_z) / 2
        p_t = [math.exp(v / t) for v in t_row]
        p_s = [math.exp(v / t) for v in s_row]
        p_t = [v / sum(p_t) for v in p_t]
        p_s = [v / sum(p_s) for v in p_s]
        kl += sum(a * math.log(a / b) for a, b in zip(p_t, p_s)) / 2
    expected = (1 - w) * ce + w * t * t * kl
    assert kd_loss(student, teacher, labels, w, t).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(student, teacher, labels, 0.0, t).item() == pytest.approx(ce, rel=1e-6)


def test_distillation_gives_the_teacher_no_gradient() -> None:
    torch.manual_seed(0)
    teacher, student = create_model("resnet20_cifar"), create_model("resnet20_cifar")
    before = copy.deepcopy(teacher.state_dict())
    loss_fn = Distillation(teacher, weight=0.5, temperature=2.0)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss_fn(images, student.train()(images), labels).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # eval mode: stats fixed


def test_reserved_sweep_parameters_reach_the_run() -> None:
    base = RunConfig(schedule=SCHEDULES / "resnet20_filter_rank.yaml", model="resnet20_cifar")
    config = run_config_for(base, {"kd_weight": 0.6, "kd_temperature": "3", "epochs": 2, "lr_anneal": "cosine"})
    assert (config.kd_weight, config.kd_temperature, config.epochs, config.lr_anneal) == (0.6, 3.0, 2, "cosine")
    with pytest.raises(SweepError, match="kd_weight=1.5 is not valid"):
        map_params({"kd_weight": 1.5}, SCHEDULES / "resnet20_filter_rank.yaml")
    with pytest.raises(SweepError, match="lr_anneal='step' is not valid: use one of none, cosine"):
        map_params({"lr_anneal": "step"}, SCHEDULES / "resnet20_filter_rank.yaml")


@pytest.mark.slow
def test_produce_recalibrates_and_distils_from_a_cached_teacher(settings, tmp_path: Path) -> None:
    blocks = ("version: 1\npruners:\n  block_pruner:\n    class: ResidualBlockPruner\n    desired_sparsity: 0.5\n"
              "    criterion: l1_bn2\n    blocks: [layer1.1, layer1.2, layer2.1, layer2.2, layer3.1, layer3.2]\n"
              "policies:\n  - pruner: {instance_name: block_pruner}\n    epochs: [0]\n")
    common = dict(schedule=blocks, model="resnet20_cifar", epochs=1, max_steps_per_epoch=2, batch_size=32,
                  bn_recalibrate=256)
    (tmp_path / "raw").mkdir()
    raw = produce(RunConfig(**{**common, "bn_recalibrate": 0, "epochs": 0}), settings, tmp_path / "raw")
    assert raw.metrics["Top1_before"] == raw.metrics["Top1_before_raw"]
    teachers = settings.cache_dir / "teachers"
    found_before = set(teachers.glob("*.pt")) if teachers.is_dir() else set()
    runs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        runs.append(produce(RunConfig(**common, kd_weight=0.7, kd_temperature=4.0), settings, tmp_path / name))
    for produced in runs:
        metrics = produced.metrics
        assert metrics["Top1_before_raw"] == raw.metrics["Top1_before_raw"]
        assert metrics["Top1_before"] > metrics["Top1_before_raw"] + 5
        assert metrics["kd_weight"] == 0.7 and metrics["kd_temperature"] == 4.0
        assert len(metrics["blocks_removed"]) == 3
    assert len(set(teachers.glob("*.pt")) - found_before) == 1
    # The second run read the teacher from the cache instead of fine-tuning it again.
    assert runs[1].stage_seconds["teacher"] < runs[0].stage_seconds["teacher"]
    (tmp_path / "annealed").mkdir()
    annealed = produce(RunConfig(**common, kd_weight=0.7, lr_anneal="cosine"), settings, tmp_path / "annealed")
    assert annealed.metrics["lr_anneal"] == "cosine" and runs[0].metrics["lr_anneal"] == "none"
    # The teacher is fine-tuned with the run's budget, annealing included, so it gets one of its own.
    assert len(set(teachers.glob("*.pt")) - found_before) == 2
