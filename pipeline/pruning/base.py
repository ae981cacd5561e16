"""The pruner contract and the context pruners work in (model, dependency graph, structure removal).

A ``Pruner`` is built from one schedule entry (``pruners.<name>``) and is called by the
``CompressionScheduler`` at every epoch begin, mini-batch end and epoch end with the policies
that name it; it decides from ``policy.fires_at(epoch)`` whether to act. Pruners never remove
structures themselves: they return ``StructureRemoval`` plans and the scheduler hands the plans of
all pruners acting at the same moment to ``PruningContext.remove`` together, so every ranking
is computed on the weights as they were before any of those removals.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc

from ..errors import ScheduleError
from ..models import canonical_name
from ..models.resnet_cifar import ZeroPadShortcut
from .criteria import weight_of

if TYPE_CHECKING:
    from pathlib import Path

    from ..batchnorm import Calibration
    from ..schedule import Policy

#: The group types a structured pruner may name.
GROUP_TYPES = ("Filters", "Channels")


@dataclass(frozen=True)
class StructureRemoval:
    """Remove ``prune_idxs`` along ``group_type`` of the conv ``layer`` (with every coupled tensor)."""

    pruner: str                 # the schedule instance that asked for it (for error messages)
    layer: str                  # module name, e.g. layer1.0.conv1
    group_type: str             # Filters (output channels) | Channels (input channels)
    prune_idxs: tuple[int, ...]


def module_name_of(weight_name: str) -> str:
    """``module.layer1.0.conv1.weight`` -> ``layer1.0.conv1``."""
    name = canonical_name(weight_name)
    return name[: -len(".weight")] if name.endswith(".weight") else name


def structure_count(module: nn.Module, group_type: str) -> int:
    """Input channels for ``Channels``, else output channels (filters) of a conv/linear layer."""
    weight = weight_of(module)
    return int(weight.shape[1] if group_type == "Channels" else weight.shape[0])


class Pruner:
    """Base of every pruner a schedule can name (register subclasses with ``@register_pruner``).

    ``args`` are already validated against the class's registered ``ArgSpec``s (defaults filled
    in, the schedule's global defaults such as ``round_to`` applied). Override the hooks you need;
    each returns the structures to remove now (an empty list when it only masks or waits).
    """

    #: True for pruners that act once at their policy epochs; ``prune_one_shot`` applies only these.
    one_shot: ClassVar[bool] = False

    def __init__(self, name: str, args: Mapping[str, Any]) -> None:
        self.name = name
        self.args = dict(args)

    @property
    def weights(self) -> list[str]:
        """The canonical weight names this pruner acts on (``weights`` argument)."""
        return [canonical_name(w) for w in self.args.get("weights", [])]

    def targets(self) -> list[tuple[str, str]]:
        """``(module name, group_type)`` of each layer this pruner touches, for the report.

        group_type is ``Filters``/``Channels`` for structured pruners, ``Elements`` for fine-grained.
        """
        return [(module_name_of(w), str(self.args.get("group_type", "Elements"))) for w in self.weights]

    @classmethod
    def check_model(cls, name: str, args: Mapping[str, Any], ctx: "PruningContext", where: str) -> None:
        """Raise ScheduleError if this entry cannot apply to ``ctx.model`` (called before any work).

        ``where`` is ``"<origin>: pruners.<name>"``. The default checks that each weight exists.
        """
        for index, weight in enumerate(args.get("weights", [])):
            resolve_weight(ctx.model, weight, f"{where}.weights[{index}]")

    @classmethod
    def check_policies(cls, name: str, args: Mapping[str, Any], policies: Sequence["Policy"],
                       where: str) -> None:
        """Raise ScheduleError if the policies naming this entry cannot drive it (default: any can)."""

    def on_epoch_begin(self, ctx: "PruningContext", epoch: int,
                       policies: Sequence["Policy"]) -> list[StructureRemoval]:
        return []

    def on_minibatch_end(self, ctx: "PruningContext", epoch: int, step: int, steps_per_epoch: int,
                         policies: Sequence["Policy"]) -> list[StructureRemoval]:
        return []

    def on_epoch_end(self, ctx: "PruningContext", epoch: int,
                     policies: Sequence["Policy"]) -> list[StructureRemoval]:
        return []


def resolve_weight(model: nn.Module, weight: str, where: str) -> nn.Parameter:
    """The parameter named ``weight`` (with or without ``module.``); unknown names suggest the closest."""
    params = dict(model.named_parameters())
    name = canonical_name(weight)
    if name not in params:
        close = difflib.get_close_matches(name, list(params), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else "list them with `edgeprune schedule show`"
        if ".downsample." in name and not any(".downsample." in p for p in params):
            hint = "this model has zero-padding (option-A) shortcuts without downsample convs: use --shortcut B"
        raise ScheduleError(f"{where}={weight!r} is not a weight of this model: {hint}")
    return params[name]


class _ZeroPadShortcutBarrier(BasePruningFunc):
    """torch-pruning handler that makes the option-A shortcut a leaf the graph does not trace into.

    Its input and output channels are different streams (the shortcut pads channels), so in and
    out are not coupled; a group that reaches it is refused before anything is pruned.
    """

    TARGET_MODULES = (ZeroPadShortcut,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("option-A shortcut channels cannot be pruned")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("option-A shortcut channels cannot be pruned")

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    def get_in_channels(self, layer: nn.Module) -> None:
        return None


class PruningContext:
    """The model being pruned, its torch-pruning dependency graph, and physical structure removal."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor | None = None,
                 origin: str = "schedule", calibration: "Calibration | None" = None,
                 block_rankings: dict[tuple[Any, ...], list[str]] | None = None,
                 cache_dir: Path | None = None) -> None:
        self.model = model
        self.example_input = example_input if example_input is not None else _default_input(model)
        self.origin = origin
        #: Train images for data-driven criteria (``ResidualBlockPruner``'s sensitivity); may be None.
        self.calibration = calibration
        #: Block rankings already computed, by (criterion, seed, blocks): a caller that prunes copies
        #: of one base model with one calibration many times passes the same dict (rapid trials:
        #: the sensitivity ranking costs 25 adaptive-BN passes on ResNet56); None computes anew.
        self.block_rankings = block_rankings
        #: The settings' cache folder, where costly rankings persist across runs (None: not kept).
        self.cache_dir = cache_dir
        self._graph: tp.DependencyGraph | None = None
        self.original_counts = dense_counts(model)

    def graph(self) -> tp.DependencyGraph:
        """The dependency graph of the model as it is now (built on first use)."""
        if self._graph is None:
            was_training = self.model.training
            self.model.eval()
            try:
                self._graph = tp.DependencyGraph().build_dependency(
                    self.model, self.example_input,
                    customized_pruners={ZeroPadShortcut: _ZeroPadShortcutBarrier()}, verbose=False)
            finally:
                self.model.train(was_training)
        return self._graph

    def group(self, layer: str, group_type: str, idxs: Sequence[int], pruner: str) -> tp.Group:
        """The torch-pruning group that removing ``idxs`` of ``layer`` drags along.

        A group reaching an option-A shortcut would cut the zero-padded residual stream, which
        torch-pruning cannot rewrite: that is a ScheduleError naming the pruner and the fix.
        """
        module = self.model.get_submodule(layer)
        fn = tp.prune_conv_out_channels if group_type == "Filters" else tp.prune_conv_in_channels
        if isinstance(module, nn.Linear):
            fn = tp.prune_linear_out_channels if group_type == "Filters" else tp.prune_linear_in_channels
        group = self.graph().get_pruning_group(module, fn, idxs=list(idxs))
        if any(isinstance(dep.target.module, ZeroPadShortcut) for dep, _ in group):
            raise ScheduleError(
                f"{self.origin}: pruners.{pruner}: {group_type} of {layer} belong to the residual stream "
                "of this option-A (zero-padding shortcut) model, which cannot be pruned: prune Filters "
                "of a block's conv1 or Channels of its conv2, or use an option-B model (--shortcut B)")
        return group

    def coupled_layers(self, layer: str, group_type: str, pruner: str) -> frozenset[tuple[str, str]]:
        """``(module name, handler)`` pairs of the group of ``layer``'s ``group_type`` (to spot overlaps)."""
        names = {module: name for name, module in self.model.named_modules()}
        group = self.group(layer, group_type, [0], pruner)
        return frozenset((names.get(dep.target.module, str(dep.target)), dep.handler.__name__)
                         for dep, _ in group if dep.target.module in names)

    def remove(self, removals: Sequence[StructureRemoval]) -> None:
        """Physically remove every planned structure (with its BatchNorm entries and dependants).

        All groups are taken before any is pruned, so a refused group leaves the model untouched;
        indices are those of the model as it was when the plans were made.
        """
        if not removals:
            return
        groups = [self.group(r.layer, r.group_type, r.prune_idxs, r.pruner) for r in removals if r.prune_idxs]
        for group in groups:
            group.prune()
        self.invalidate_graph()

    def invalidate_graph(self) -> None:
        """Forget the dependency graph after the model's structure changed; it is traced again on next use."""
        self._graph = None


#: Attribute under which a model remembers its structure counts from before any pruning.
_DENSE_COUNTS = "_edgeprune_dense_counts"


def dense_counts(model: nn.Module) -> dict[tuple[str, str], int]:
    """``(layer, group_type) -> count`` of the model before its first pruning.

    Sparsity targets are relative to these, as in Distiller, so a one-shot pruner that fires again
    (a second policy epoch, or a scheduler built after ``prune_one_shot``) removes nothing more.
    The counts are remembered on the model object the first time they are asked for.
    """
    if not hasattr(model, _DENSE_COUNTS):
        counts = {(name, kind): structure_count(module, kind) for name, module in model.named_modules()
                  if isinstance(module, (nn.Conv2d, nn.Linear)) for kind in GROUP_TYPES}
        setattr(model, _DENSE_COUNTS, counts)
    return getattr(model, _DENSE_COUNTS)


def _default_input(model: nn.Module) -> torch.Tensor:
    """A CIFAR-sized zero image on the model's device."""
    device = next(model.parameters()).device
    return torch.zeros(1, 3, 32, 32, device=device)
