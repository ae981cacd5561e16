"""Knowledge distillation while retraining (Hinton et al. 2015; Distiller's --kd-teacher).

The pruned student learns from the labels and from a teacher's softened outputs:
``(1 - w) * CE(student, labels) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.
The T^2 factor keeps the soft term's gradients on the scale of the hard one's as T grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            weight: float, temperature: float) -> torch.Tensor:
    """The distillation loss of one batch (mean over the batch); ``weight`` 0 is plain cross-entropy."""
    hard = F.cross_entropy(student_logits, labels)
    if weight == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return (1.0 - weight) * hard + weight * temperature ** 2 * soft


@dataclass
class Distillation:
    """A training loss that distils ``teacher`` into the model being trained (``train(loss_fn=)``)."""

    teacher: nn.Module
    weight: float
    temperature: float

    def __post_init__(self) -> None:
        self.teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def __call__(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The teacher stays in eval mode (its BatchNorm statistics fixed) and gets no gradient.
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        return kd_loss(logits, teacher_logits, labels, self.weight, self.temperature)
