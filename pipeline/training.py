"""Evaluation (Top1/Top5/loss) and SGD retraining with pluggable compression hooks.

The trainer knows nothing of pruning or lr schedules: a ``TrainingHooks`` object (the compression
scheduler) is called at epoch and minibatch boundaries and tells the trainer when the model's
structure changed, so the optimizer is rebuilt over the new parameters.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import DataSplits, Split, batches

log = logging.getLogger(__name__)

#: ``(images, student_logits, labels) -> loss`` of one training batch (e.g. ``distill.Distillation``).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Within-run lr annealing: ``none`` keeps the lr the schedule sets each epoch; ``cosine``
#: multiplies it, step by step, by a half cosine from 1 to 0 over the whole retraining.
LR_ANNEALS = ("none", "cosine")


@dataclass
class Accuracy:
    """Top1/Top5 in percent and mean cross-entropy over ``count`` images (NaN when count is 0)."""

    top1: float
    top5: float
    loss: float
    count: int
    #: Share of the images predicted as the most-predicted class (1.0: one class for everything).
    top_class_share: float = math.nan


@dataclass
class TrainConfig:
    """SGD retraining settings; ``max_steps_per_epoch`` caps the minibatches per epoch (fast runs)."""

    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_steps_per_epoch: int | None = None
    device: str = "cpu"
    seed: int = 0
    #: One of ``LR_ANNEALS``. A schedule's lr_schedulers step at epoch ends, so a fine-tuning of an
    #: epoch or two never decays and ends on a noisy iterate; ``cosine`` anneals it within the budget.
    lr_anneal: str = "none"

    def __post_init__(self) -> None:
        if self.lr_anneal not in LR_ANNEALS:
            raise ValueError(f"lr_anneal={self.lr_anneal!r}: use one of {', '.join(LR_ANNEALS)}")

    def anneal_factor(self, step: int, total_steps: int) -> float:
        """What multiplies the epoch's lr at global step ``step`` (from 0) of ``total_steps``."""
        if self.lr_anneal == "none" or total_steps <= 0:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


@dataclass
class TrainReport:
    """What a ``train`` call did: epochs run, validation accuracy after each, early stop, time."""

    epochs_run: int
    history: list[Accuracy] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0


@runtime_checkable
class TrainingHooks(Protocol):
    """Callbacks for the compression scheduler. A ``True`` return means the model's structure
    changed (channels physically removed) and the trainer must rebuild its optimizer."""

    def on_epoch_begin(self, epoch: int, optimizer: torch.optim.Optimizer) -> bool | None: ...

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer) -> bool: ...

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer) -> bool: ...


# --------------------------------------------------------------------------------------------
# Evaluation


#: Evaluation number formats: ``bf16`` roughly halves CPU time on CPUs with AVX512-BF16/AMX
#: (the format OpenVINO itself picks there) at a small accuracy cost.
EVAL_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def evaluate(model: nn.Module, split: Split, batch_size: int = 250, device: str = "cpu",
             precision: str = "fp32") -> Accuracy:
    """Top1/Top5 (percent) and mean cross-entropy of ``model`` on ``split``.

    Runs a conv-BN-folded copy of the model in channels-last layout under ``inference_mode``, in
    ``precision`` (``fp32`` or ``bf16``); batches of a few hundred images keep activations in the
    CPU caches (faster than 1000). The model itself is not changed.
    """
    count = len(split)
    if count == 0:
        return Accuracy(math.nan, math.nan, math.nan, 0)
    if precision not in EVAL_DTYPES:
        raise ValueError(f"precision={precision!r}: use one of {sorted(EVAL_DTYPES)}")
    dtype = EVAL_DTYPES[precision]
    runner = _inference_copy(model, device).to(dtype)
    top1 = top5 = 0
    loss_sum = 0.0
    predicted = torch.zeros(0, dtype=torch.long)
    with torch.inference_mode():
        for images, labels in tqdm(batches(split, batch_size), total=math.ceil(count / batch_size),
                                   desc=f"evaluating {split.name}", unit="batch", disable=None, leave=False):
            images = images.to(device, dtype, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            logits = runner(images).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = best.eq(labels[:, None])
            top1 += hits[:, 0].sum().item()
            top5 += hits.any(dim=1).sum().item()
            per_class = torch.bincount(best[:, 0].cpu(), minlength=logits.shape[1])
            predicted = per_class if not len(predicted) else predicted + per_class
    return Accuracy(100.0 * top1 / count, 100.0 * top5 / count, loss_sum / count, count,
                    top_class_share=predicted.max().item() / count)


def _inference_copy(model: nn.Module, device: str) -> nn.Module:
    """An eval-mode copy with BatchNorm folded into the convolutions when torch.fx can trace the
    model (fewer passes over memory); the model itself is left untouched."""
    runner = copy.deepcopy(model).eval().to(device)
    # Folding would bypass hooks (e.g. pruning masks applied in a forward pre-hook): keep those as is.
    if not any(m._forward_hooks or m._forward_pre_hooks for m in runner.modules()):
        try:
            from torch.fx.experimental.optimization import fuse

            runner = fuse(runner, inplace=True)
        except Exception as exc:  # noqa: BLE001 - any trace failure just means no folding
            log.debug("conv-BN folding skipped: %s", exc)
    # Module.to takes memory_format (torch's documented signature); its typed overloads leave it out.
    return runner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------
# Training


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a run is repeatable on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    model: nn.Module,
    splits: DataSplits,
    config: TrainConfig,
    hooks: TrainingHooks | None = None,
    on_epoch: Callable[[int, Accuracy], bool] | None = None,
    loss_fn: LossFn | None = None,
) -> TrainReport:
    """Retrain ``model`` in place with SGD on ``splits.train`` (augmented) for ``config.epochs``.

    After each epoch the model is evaluated on ``splits.val`` and ``on_epoch(epoch, accuracy)`` is
    called; returning ``False`` stops training (any other value goes on). Epochs are numbered from
    0; ``stopped_early`` is set only when epochs were left. Hooks run after the optimizer step.
    ``loss_fn`` replaces the cross-entropy (knowledge distillation).
    """
    seed_everything(config.seed)
    started = time.perf_counter()
    model.to(config.device)
    optimizer = _make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(splits.train) / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    report = TrainReport(epochs_run=0)
    for epoch in range(config.epochs):
        if hooks is not None and hooks.on_epoch_begin(epoch, optimizer):
            optimizer = _rebuild_optimizer(model, optimizer)
        optimizer = _train_epoch(model, splits.train, config, epoch, steps_per_epoch, optimizer, hooks, loss_fn)
        if hooks is not None and hooks.on_epoch_end(epoch, optimizer):
            optimizer = _rebuild_optimizer(model, optimizer)
        accuracy = evaluate(model, splits.val, device=config.device)
        report.history.append(accuracy)
        report.epochs_run = epoch + 1
        log.info("epoch %d: val top1 %.2f%% top5 %.2f%% loss %.4f", epoch, accuracy.top1, accuracy.top5,
                 accuracy.loss)
        if on_epoch is not None and on_epoch(epoch, accuracy) is False:
            report.stopped_early = epoch + 1 < config.epochs
            break
    report.seconds = time.perf_counter() - started
    return report


def _train_epoch(model: nn.Module, split: Split, config: TrainConfig, epoch: int, steps: int,
                 optimizer: torch.optim.Optimizer, hooks: TrainingHooks | None,
                 loss_fn: LossFn | None = None) -> torch.optim.Optimizer:
    """One pass of at most ``steps`` minibatches; returns the optimizer (rebuilt if a hook asked).

    With annealing each step's lr is the epoch's lr times ``config.anneal_factor``; the epoch's lr
    is put back at the end, so the schedule's lr_schedulers step from it, not from the annealed one."""
    model.train()
    annealed = config.lr_anneal != "none"
    epoch_lrs = [group["lr"] for group in optimizer.param_groups]
    seen = correct = 0
    loss_sum = 0.0
    stream = batches(split, config.batch_size, shuffle=True, augment=True, seed=config.seed * 100_003 + epoch)
    with tqdm(total=steps, desc=f"epoch {epoch}", unit="batch", disable=None, leave=False) as progress:
        for step, (images, labels) in zip(range(steps), stream):
            images = images.to(config.device, non_blocking=True)
            labels = labels.to(config.device, non_blocking=True)
            logits = model(images)
            loss = loss_fn(images, logits, labels) if loss_fn else nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if annealed:
                _set_lrs(optimizer, epoch_lrs, config.anneal_factor(epoch * steps + step, config.epochs * steps))
            optimizer.step()
            seen += len(labels)
            correct += logits.argmax(dim=1).eq(labels).sum().item()
            loss_sum += loss.item() * len(labels)
            if hooks is not None and hooks.on_minibatch_end(epoch, step, steps, optimizer):
                optimizer = _rebuild_optimizer(model, optimizer)
            progress.update()
            progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
    if annealed:
        _set_lrs(optimizer, epoch_lrs, 1.0)
    return optimizer


def _set_lrs(optimizer: torch.optim.Optimizer, lrs: list[float], factor: float) -> None:
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr * factor


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _rebuild_optimizer(model: nn.Module, old: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A new SGD over the model's current parameters with the old one's current settings (lr
    included). Momentum survives for parameters that are unchanged; replaced ones start fresh."""
    settings = {key: value for key, value in old.param_groups[0].items() if key != "params"}
    params = list(model.parameters())
    new = torch.optim.SGD(params, lr=settings.pop("lr"))
    new.param_groups[0].update(settings)
    for param in params:
        state = old.state.get(param)
        if state and all(not torch.is_tensor(v) or v.shape in (param.shape, torch.Size()) for v in state.values()):
            new.state[param] = state
    log.debug("optimizer rebuilt over %d parameters", len(params))
    return new
