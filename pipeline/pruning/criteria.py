"""Importance criteria that rank the structures of one layer, kept apart from the pruners.

A criterion scores each filter (output channel) or channel (input channel) of a layer; the
lowest scores are pruned. Structured pruners select one by name with the schedule argument
``criterion`` (``l1``, ``l2``, ... plus any registered with ``@register_criterion``).
"""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

import torch
from torch import nn

T = TypeVar("T", bound="Callable[[], Importance]")


class Importance(Protocol):
    """Scores of the structures of ``layer`` (a module in ``model``): one float per structure."""

    def __call__(self, model: nn.Module, layer: str, group_type: str) -> torch.Tensor: ...


#: Criterion name (as written in schedules) -> factory of an ``Importance``.
CRITERIA: dict[str, Callable[[], Importance]] = {}


def register_criterion(name: str) -> Callable[[T], T]:
    """Class decorator: make an importance class selectable as ``criterion: <name>``."""

    def decorate(cls: T) -> T:
        if name in CRITERIA:
            raise ValueError(f"criterion {name} registered twice")
        CRITERIA[name] = cls
        return cls

    return decorate


def criterion_names() -> tuple[str, ...]:
    """The registered criterion names, sorted (late-bound choices for schedule validation)."""
    return tuple(sorted(CRITERIA))


def weight_of(module: nn.Module) -> torch.Tensor:
    """The weight of a conv, linear or BatchNorm layer (``nn.Module`` types an attribute as a
    tensor or a module)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight


def structures_view(weight: torch.Tensor, group_type: str) -> torch.Tensor:
    """The weight as one row per structure: filters are dim 0, channels dim 1."""
    if group_type == "Channels":
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], -1)


class _LpNorm:
    """Mean Lp norm of each structure, as Distiller ranks (normalising by length keeps its order)."""

    p: int = 1

    def __call__(self, model: nn.Module, layer: str, group_type: str) -> torch.Tensor:
        with torch.no_grad():
            rows = structures_view(weight_of(model.get_submodule(layer)).detach(), group_type)
            return torch.linalg.vector_norm(rows, ord=self.p, dim=1) / rows.shape[1]


@register_criterion("l1")
class L1Norm(_LpNorm):
    """Mean absolute value of a structure's weights (Distiller's L1Ranked... pruners)."""

    p = 1


@register_criterion("l2")
class L2Norm(_LpNorm):
    """Mean L2 norm of a structure's weights (Distiller's L2Ranked... pruners)."""

    p = 2
