"""Ranking criteria beyond Lp norms, for the structured pruners: FPGM and BN scale.

Each criterion scores the structures of one weight tensor (filters = output channels, dim 0;
channels = input channels, dim 1); the lowest scores are removed first.

- **FPGM** (He et al., CVPR 2019, "Filter Pruning via Geometric Median"): a structure close to the
  geometric median of its layer is replaceable by the others. Score = sum of Euclidean distances
  from the structure to every other structure of the tensor; the smallest sums go first. Unlike a
  norm, this can remove a large filter that merely duplicates others.
- **BN scale** (Liu et al., ICCV 2017, "Network Slimming"): the BatchNorm scale |gamma| that
  multiplies a channel measures how much it contributes downstream. For filters of a conv, the BN
  right after it; for input channels of a conv, the BN that produced its input.
"""

from __future__ import annotations

import functools
import weakref

import torch
from torch import nn

from ..errors import ScheduleError
from ..models import canonical_name
from .criteria import register_criterion, structures_view, weight_of

#: group_type -> the weight dimension that indexes its structures.
STRUCTURE_DIM = {"Filters": 0, "Channels": 1}


def _structure_dim(group_type: str) -> int:
    if group_type not in STRUCTURE_DIM:
        raise ScheduleError(f"group_type {group_type!r} has no ranking here: use Filters or Channels")
    return STRUCTURE_DIM[group_type]


def fpgm_scores(weight: torch.Tensor, group_type: str) -> torch.Tensor:
    """Sum of Euclidean distances from each structure to all others (low = near the median)."""
    _structure_dim(group_type)
    vectors = structures_view(weight.detach(), group_type).float()
    return torch.cdist(vectors, vectors, p=2).sum(dim=1)


def _module_name(param_name: str) -> str:
    name = canonical_name(param_name)
    return name[: -len(".weight")] if name.endswith(".weight") else name


#: model -> its conv/BN adjacency; pruning changes widths, never which module feeds which.
_ADJACENCY: "weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[str | None, str | None]]]" = \
    weakref.WeakKeyDictionary()


def adjacent_batchnorms(model: nn.Module, example_input: torch.Tensor | None = None
                        ) -> dict[str, tuple[str | None, str | None]]:
    """For every conv: (BN that normalises its output, BN whose output is its input), by name.

    Found by one traced forward pass rather than by module names, so it holds for any model: a
    BN follows a conv when it consumes the conv's output tensor; a conv's input comes from a BN
    when the tensor was made by that BN and passed only through activation modules on the way.
    Traced once per model.
    """
    if model not in _ADJACENCY:
        _ADJACENCY[model] = _trace_adjacency(model, example_input)
    return _ADJACENCY[model]


def _trace_adjacency(model: nn.Module, example_input: torch.Tensor | None
                     ) -> dict[str, tuple[str | None, str | None]]:
    example_input = torch.zeros(1, 3, 32, 32) if example_input is None else example_input
    produced_by_conv: dict[int, str] = {}
    produced_by_bn: dict[int, str] = {}
    keep_alive: list[torch.Tensor] = []  # ids are only unique while the tensors live
    after: dict[str, str] = {}
    before: dict[str, str] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str) -> None:
        source = id(inputs[0]) if inputs and isinstance(inputs[0], torch.Tensor) else None
        keep_alive.extend([output, *(t for t in inputs if isinstance(t, torch.Tensor))])
        if isinstance(module, nn.Conv2d):
            produced_by_conv[id(output)] = name
            if source in produced_by_bn:
                before[name] = produced_by_bn[source]
        elif isinstance(module, nn.BatchNorm2d):
            if source in produced_by_conv:
                after[produced_by_conv[source]] = name
            produced_by_bn[id(output)] = name
        elif source in produced_by_bn:  # activations pass the BN's channels through unchanged
            produced_by_bn[id(output)] = produced_by_bn[source]

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh)):
            handles.append(module.register_forward_hook(functools.partial(hook, name=canonical_name(name))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {conv: (after.get(conv), before.get(conv)) for conv in produced_by_conv.values()}


def bn_scale_scores(model: nn.Module, param_name: str, group_type: str,
                    example_input: torch.Tensor | None = None) -> torch.Tensor:
    """|gamma| of the BatchNorm tied to each filter (BN after) or input channel (BN before)."""
    dim = _structure_dim(group_type)
    conv = _module_name(param_name)
    bn_after, bn_before = adjacent_batchnorms(model, example_input).get(conv, (None, None))
    bn_name = bn_after if dim == 0 else bn_before
    if bn_name is None:
        side = "follows" if dim == 0 else "feeds"
        raise ScheduleError(
            f"{param_name}: no BatchNorm {side} this conv, so BN-scale ranking cannot score its "
            f"{group_type.lower()}: use criterion l1 or fpgm for it")
    modules = {canonical_name(name): module for name, module in model.named_modules()}
    return modules[bn_name].weight.detach().abs().clone()


@register_criterion("fpgm")
class GeometricMedianDistance:
    """FPGM: structures nearest the geometric median of their layer go first."""

    def __call__(self, model: nn.Module, layer: str, group_type: str) -> torch.Tensor:
        return fpgm_scores(weight_of(model.get_submodule(layer)), group_type)


@register_criterion("bn_scale")
class BatchNormScale:
    """Network Slimming: the |gamma| of the BatchNorm tied to each structure; smallest go first."""

    def __call__(self, model: nn.Module, layer: str, group_type: str) -> torch.Tensor:
        return bn_scale_scores(model, f"{layer}.weight", group_type)
