"""Learning-rate schedulers a schedule may name, with the arguments torch gives them.

Each is a closed form ``lr(base_lr, steps)`` of the number of steps taken so far, so it survives
the trainer rebuilding its optimizer after a structure change (the base lr is remembered here,
not in the optimizer). The ``CompressionScheduler`` steps one once at the end of every epoch its
policy fires at; ``StepLR.step_size``, ``MultiStepLR.milestones`` and ``CosineAnnealingLR.T_max``
therefore count those steps, as they count ``scheduler.step()`` calls in torch.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Mapping

import torch

from .registry import ArgSpec, register_lr_scheduler

_GAMMA = ArgSpec("gamma", "float", default=0.1, low=0.0, example=0.95, help="multiplicative decay")


class EpochLRScheduler:
    """Sets an optimizer's lr from its base lr and the number of steps taken."""

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        self.name = name
        self.args = dict(args)
        self.steps = 0
        self.base_lrs: list[float] | None = None

    def lr(self, base_lr: float, steps: int) -> float:
        raise NotImplementedError

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """One step: remember the base lrs the first time, then set every group's lr."""
        if self.base_lrs is None:
            self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps += 1
        for index, group in enumerate(optimizer.param_groups):
            group["lr"] = self.lr(self.base_lrs[index % len(self.base_lrs)], self.steps)


@register_lr_scheduler(ArgSpec("gamma", "float", required=True, low=0.0, example=0.95,
                               help="multiplicative decay per step"),
                       summary="lr = base * gamma^steps")
class ExponentialLR(EpochLRScheduler):
    def lr(self, base_lr: float, steps: int) -> float:
        return base_lr * self.args["gamma"] ** steps


@register_lr_scheduler(ArgSpec("step_size", "int", required=True, low=1, example=30, help="steps per decay"),
                       _GAMMA, summary="lr = base * gamma^(steps // step_size)")
class StepLR(EpochLRScheduler):
    def lr(self, base_lr: float, steps: int) -> float:
        return base_lr * self.args["gamma"] ** (steps // self.args["step_size"])


@register_lr_scheduler(ArgSpec("milestones", "list[int]", required=True, example=[30, 60],
                               help="steps at which the lr decays"),
                       _GAMMA, summary="lr = base * gamma^(milestones passed)")
class MultiStepLR(EpochLRScheduler):
    def lr(self, base_lr: float, steps: int) -> float:
        return base_lr * self.args["gamma"] ** bisect.bisect_right(sorted(self.args["milestones"]), steps)


@register_lr_scheduler(ArgSpec("T_max", "int", required=True, low=1, example=50, help="steps of a half cosine"),
                       ArgSpec("eta_min", "float", default=0.0, low=0.0, example=0.0, help="lowest lr"),
                       summary="lr = eta_min + (base - eta_min) * (1 + cos(pi * steps / T_max)) / 2")
class CosineAnnealingLR(EpochLRScheduler):
    def lr(self, base_lr: float, steps: int) -> float:
        eta_min = self.args["eta_min"]
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * steps / self.args["T_max"])) / 2
