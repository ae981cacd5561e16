"""What pruning did: per-layer channels kept and element sparsity, model MACs and parameters.

Structured removal (fewer channels) and fine-grained sparsity (zeros inside a dense tensor) are
reported apart: ``channels_after`` counts the structures that remain, ``element_sparsity`` the
fraction of zeros in the layer's weight as it is now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from ..models import count_macs_params
from .base import structure_count


@dataclass
class LayerReport:
    """One pruned layer (``name`` is the module, e.g. ``layer1.0.conv1``)."""

    name: str
    group_type: str             # Filters | Channels | Elements
    channels_before: int        # filters for Filters/Elements, input channels for Channels
    channels_after: int
    element_sparsity: float     # zeros / elements of the weight after pruning
    macs_before: int = 0
    macs_after: int = 0


@dataclass
class PruneReport:
    """Per-layer results and model totals (MACs and parameters by ``count_macs_params``)."""

    layers: list[LayerReport]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    arch_before: str = ""
    arch_after: str = ""
    pruners_applied: list[str] = field(default_factory=list)
    #: Residual blocks removed by ResidualBlockPruner, and those it was given but kept.
    blocks_removed: list[str] = field(default_factory=list)
    blocks_kept: list[str] = field(default_factory=list)
    #: ``"<pruner>: <weights>"`` for weights skipped because their block was removed, and
    #: ``"<pruner>: <names> (blocks this model does not have)"`` for a ``cross_depth`` schedule's
    #: names of blocks deeper than the model.
    pruners_skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneReport":
        return cls(**{**data, "layers": [LayerReport(**layer) for layer in data["layers"]]})

    def table(self) -> str:
        """A fixed-width text table: one row per layer, then the totals."""
        header = ("layer", "type", "before", "after", "MACs before", "MACs after", "zeros")
        rows = [(r.name, r.group_type, str(r.channels_before), str(r.channels_after), f"{r.macs_before:,}",
                 f"{r.macs_after:,}", f"{r.element_sparsity:.1%}") for r in self.layers]
        rows.append(("total MACs", "", "", "", f"{self.macs_before:,}", f"{self.macs_after:,}",
                     _ratio(self.macs_after, self.macs_before)))
        rows.append(("total params", "", "", "", f"{self.params_before:,}", f"{self.params_after:,}",
                     _ratio(self.params_after, self.params_before)))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row: Iterable[str]) -> str:
            cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        notes = [f"{label}: {', '.join(items)}" for label, items in (
            ("blocks removed", self.blocks_removed), ("blocks kept", self.blocks_kept),
            ("skipped (block removed, or absent where noted)", self.pruners_skipped)) if items]
        return "\n".join([line(header), rule, *map(line, rows[:-2]), rule, *map(line, rows[-2:]), *notes])


def _ratio(after: int, before: int) -> str:
    return f"{after / before:.1%} kept" if before else ""


def arch_signature(model: nn.Module) -> str:
    """Output channels of every conv in module order, runs written ``16x7``: ``16x7-32x6-64x6``.

    Equal strings mean equal architectures, so it keys measurement caches and groups trials.
    """
    counts = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    runs: list[list[int]] = []
    for count in counts:
        if runs and runs[-1][0] == count:
            runs[-1][1] += 1
        else:
            runs.append([count, 1])
    return "-".join(str(c) if n == 1 else f"{c}x{n}" for c, n in runs)


def conv_macs(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """MACs of each conv module by name (same formula as ``count_macs_params``)."""
    names = {module: name for name, module in model.named_modules()}
    macs: dict[str, int] = {}

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        kh, kw = module.kernel_size
        macs[names[module]] = output[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return macs


@dataclass
class ModelSnapshot:
    """Sizes of a model at one moment, to compare before and after pruning."""

    macs: int
    params: int
    arch: str
    layer_macs: dict[str, int]
    channels: dict[tuple[str, str], int]

    @classmethod
    def take(cls, model: nn.Module, example_input: torch.Tensor, targets: Iterable[tuple[str, str]]) -> "ModelSnapshot":
        macs, params = count_macs_params(model, tuple(example_input[:1].shape))
        modules = dict(model.named_modules())
        # A layer whose residual block was removed counts zero structures.
        channels = {(layer, kind): structure_count(modules[layer], kind) if layer in modules else 0
                    for layer, kind in targets}
        return cls(macs, params, arch_signature(model), conv_macs(model, example_input), channels)


def build_report(before: ModelSnapshot, model: nn.Module, example_input: torch.Tensor,
                 targets: list[tuple[str, str]], pruners_applied: list[str]) -> PruneReport:
    """Compare ``before`` with ``model`` as it is now, for each ``(layer, group_type)`` target."""
    after = ModelSnapshot.take(model, example_input, targets)
    layers = []
    modules = dict(model.named_modules())
    for layer, kind in targets:
        weight = modules[layer].weight.detach() if layer in modules else None
        zeros = float((weight == 0).sum().item()) / weight.numel() if weight is not None else 1.0
        layers.append(LayerReport(layer, kind, before.channels[(layer, kind)], after.channels[(layer, kind)],
                                  zeros, before.layer_macs.get(layer, 0), after.layer_macs.get(layer, 0)))
    return PruneReport(layers, before.macs, after.macs, before.params, after.params, before.arch,
                       after.arch, list(pruners_applied))
