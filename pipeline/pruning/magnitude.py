"""Fine-grained (element-wise) magnitude pruning: by level, by threshold, by sensitivity × std.

These pruners zero single weights inside a dense tensor; nothing is removed, so MACs and latency
on a dense engine do not change (see :mod:`pipeline.pruning.sparsity` for the two kinds of report).
The zeros are kept by a :class:`~pipeline.pruning.masks.MaskSet` during retraining.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import ScheduleError
from ..models import canonical_name
from .base import PruningContext, resolve_weight
from .masks import MaskingPruner, named_weights
from .registry import ArgSpec, register_pruner

if TYPE_CHECKING:
    from ..schedule import Policy

#: Key of the default entry in ``thresholds`` / ``sensitivities``.
DEFAULT_KEY = "*"


def level_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that zeros exactly ``round(sparsity * numel)`` smallest-magnitude elements.

    Ties are broken by position, so the achieved sparsity is the requested one to within one
    element (Distiller's threshold-based version zeros every tie and can overshoot).
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must lie in [0, 1], got {sparsity}")
    flat = weight.detach().abs().flatten()
    n_zero = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_zero:
        keep[torch.topk(flat, n_zero, largest=False, sorted=False).indices] = False
    return keep.view_as(weight)


def threshold_mask(weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep-mask of the elements whose magnitude is strictly above ``threshold``."""
    return weight.detach().abs() > threshold


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Conv and linear weights by canonical name: the tensors a ``'*'`` entry applies to.

    Biases and BatchNorm parameters are left alone (Distiller's ``'*'`` hit every parameter,
    which also zeroed BN scales; that is never what a fine-grained schedule means).
    """
    names = {f"{canonical_name(mod_name)}.weight" for mod_name, module in model.named_modules()
             if isinstance(module, (nn.Conv2d, nn.Linear))}
    return {name: p for name, p in named_weights(model).items() if name in names}


def resolve_per_weight(values: Mapping[str, float], model: nn.Module, where: str) -> dict[str, float]:
    """Map ``{weight_name | '*': value}`` onto the model's prunable weights.

    Explicit names win over ``'*'``; a name the model lacks is a ScheduleError naming the closest.
    """
    weights = prunable_weights(model)
    explicit = {canonical_name(k): float(v) for k, v in values.items() if k != DEFAULT_KEY}
    for key in values:
        if key != DEFAULT_KEY:
            resolve_weight(model, key, f"{where}.{key}")
            if canonical_name(key) not in weights:
                raise ScheduleError(f"{where}.{key}: not a conv or linear weight: name conv/linear "
                                    "weights only (BatchNorm and biases are never pruned)")
    resolved = {}
    if DEFAULT_KEY in values:
        resolved = {name: float(values[DEFAULT_KEY]) for name in weights}
    resolved.update(explicit)
    return resolved


def check_non_negative(values: Mapping[str, object], where: str) -> None:
    """A non-empty mapping of finite numbers >= 0, else a ScheduleError naming the first bad entry."""
    if not values:
        raise ScheduleError(f"{where} is empty: give {{weight_name: value}} entries or '*': value")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ScheduleError(f"{where}.{key}={value!r} is not a number >= 0: use e.g. 0.05")


class _PerWeightMaskPruner(MaskingPruner):
    """A fine-grained pruner driven by one number per weight (``{weight_name: v, '*': v}``)."""

    #: The argument holding the per-weight numbers.
    per_weight_arg: str = ""

    @property
    def weights(self) -> list[str]:
        return [canonical_name(k) for k in self.args[self.per_weight_arg] if k != DEFAULT_KEY]

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: PruningContext, where: str) -> None:
        key = f"{where}.{cls.per_weight_arg}"
        check_non_negative(args[cls.per_weight_arg], key)
        resolve_per_weight(args[cls.per_weight_arg], ctx.model, key)

    def threshold(self, weight_name: str, weight: torch.Tensor, value: float) -> float:
        """The magnitude at or below which elements of ``weight_name`` are zeroed."""
        raise NotImplementedError

    def update_masks(self, ctx: PruningContext, epoch: int, policies: Sequence["Policy"]) -> None:
        params = named_weights(ctx.model)
        values = resolve_per_weight(self.args[self.per_weight_arg], ctx.model,
                                    f"pruners.{self.name}.{self.per_weight_arg}")
        for weight_name, value in values.items():
            weight = params[weight_name]
            self.masks.set(weight_name, threshold_mask(weight, self.threshold(weight_name, weight, value)))


@register_pruner(
    ArgSpec("thresholds", "mapping", required=True, example={"*": 0.01},
            help="{weight_name: t, '*': t}: zero every element with |w| <= t; '*' covers all conv/linear weights"),
    summary="fine-grained: zero the elements whose magnitude is at most a per-layer threshold")
class MagnitudeParameterPruner(_PerWeightMaskPruner):
    """Zero every weight whose magnitude is at most its tensor's threshold (Distiller's class)."""

    per_weight_arg = "thresholds"

    def threshold(self, weight_name: str, weight: torch.Tensor, value: float) -> float:
        return value


@register_pruner(
    ArgSpec("sensitivities", "mapping", required=True, example={"*": 0.25},
            help="{weight_name: s, '*': s}: threshold = s x std of the layer's weights"),
    summary="fine-grained: threshold = sensitivity x std of the layer's weights (Han et al. 2015)")
class SensitivityPruner(_PerWeightMaskPruner):
    """Han et al. 2015: threshold = sensitivity × standard deviation of the layer's weights.

    The standard deviation is taken once, when the pruner first fires, as in Distiller: as
    retraining pulls more weights toward zero, the fixed threshold traps more of them.
    """

    per_weight_arg = "sensitivities"

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        super().__init__(name, args)
        self._stddev: dict[str, float] = {}

    def threshold(self, weight_name: str, weight: torch.Tensor, value: float) -> float:
        if weight_name not in self._stddev:
            self._stddev[weight_name] = float(weight.detach().std())
        return value * self._stddev[weight_name]
