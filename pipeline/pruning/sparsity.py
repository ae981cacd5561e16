"""What pruning actually did to each weight tensor: zeros inside it, and structures removed from it.

Two different things are both called "sparsity":

- **element sparsity**: the fraction of zeros inside a (still dense) tensor, what fine-grained
  pruners make. A dense engine still multiplies by those zeros: MACs and latency stay put.
- **structured removal**: filters/channels physically gone, so the tensor and the MACs shrink.

This module measures both from the tensors themselves (never from what a schedule asked for), so
a report cannot confuse them. ``effective_sparsity`` combines them: the share of the original
elements that are no longer non-zero, by removal or by zeroing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..models import canonical_name


@dataclass
class WeightSparsity:
    """One conv/linear weight, before pruning and now."""

    name: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    nonzero: int

    @property
    def elements_before(self) -> int:
        return _numel(self.shape_before)

    @property
    def elements(self) -> int:
        """Elements the tensor holds now (after any structured removal)."""
        return _numel(self.shape_after)

    @property
    def element_sparsity(self) -> float:
        """Fraction of zeros inside the current tensor (fine-grained sparsity)."""
        return 1.0 - self.nonzero / self.elements if self.elements else 0.0

    @property
    def filters_kept(self) -> tuple[int, int]:
        """(output channels now, output channels before)."""
        return self.shape_after[0], self.shape_before[0]

    @property
    def channels_kept(self) -> tuple[int, int]:
        """(input channels now, input channels before)."""
        return self.shape_after[1], self.shape_before[1]

    @property
    def effective_sparsity(self) -> float:
        """Share of the original elements that are gone or zero."""
        return 1.0 - self.nonzero / self.elements_before if self.elements_before else 0.0


@dataclass
class SparsityReport:
    """Per-weight sparsity and totals over all conv and linear weights."""

    weights: list[WeightSparsity] = field(default_factory=list)

    @property
    def elements_before(self) -> int:
        return sum(w.elements_before for w in self.weights)

    @property
    def elements(self) -> int:
        return sum(w.elements for w in self.weights)

    @property
    def nonzero(self) -> int:
        return sum(w.nonzero for w in self.weights)

    @property
    def element_sparsity(self) -> float:
        """Zeros inside the remaining tensors, over all of them."""
        return 1.0 - self.nonzero / self.elements if self.elements else 0.0

    @property
    def removed_fraction(self) -> float:
        """Share of the original elements removed structurally."""
        return 1.0 - self.elements / self.elements_before if self.elements_before else 0.0

    @property
    def effective_sparsity(self) -> float:
        """Share of the original elements that are gone or zero."""
        return 1.0 - self.nonzero / self.elements_before if self.elements_before else 0.0

    def to_dict(self) -> dict:
        """Plain numbers for JSON (result files, ``--json``)."""
        return {
            "weights": [
                {"name": w.name, "shape_before": list(w.shape_before), "shape_after": list(w.shape_after),
                 "nonzero": w.nonzero, "element_sparsity": w.element_sparsity,
                 "effective_sparsity": w.effective_sparsity,
                 "filters_kept": w.filters_kept[0], "filters_before": w.filters_kept[1],
                 "channels_kept": w.channels_kept[0], "channels_before": w.channels_kept[1]}
                for w in self.weights],
            "total": {"elements_before": self.elements_before, "elements": self.elements,
                      "nonzero": self.nonzero, "element_sparsity": self.element_sparsity,
                      "removed_fraction": self.removed_fraction,
                      "effective_sparsity": self.effective_sparsity},
        }


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes of the conv and linear weights, by canonical name: take it before pruning."""
    return {f"{canonical_name(name)}.weight": tuple(module.weight.shape)
            for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}


def measure_sparsity(model: nn.Module, shapes_before: dict[str, tuple[int, ...]] | None = None
                     ) -> SparsityReport:
    """Count zeros and compare shapes with ``shapes_before`` (default: the current shapes)."""
    report = SparsityReport()
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        key = f"{canonical_name(name)}.weight"
        shape = tuple(module.weight.shape)
        before = (shapes_before or {}).get(key, shape)
        report.weights.append(WeightSparsity(key, before, shape, int((module.weight != 0).sum())))
    return report


def format_sparsity_table(report: SparsityReport, only_changed: bool = True) -> str:
    """A fixed-width table: filters/channels kept, element and effective sparsity, and totals."""
    rows = [w for w in report.weights
            if not only_changed or w.shape_after != w.shape_before or w.nonzero < w.elements]
    header = f"{'weight':<34} {'filters':>9} {'channels':>9} {'zeros %':>8} {'gone %':>8}"
    lines = [header, "-" * len(header)]
    for w in rows:
        lines.append(f"{w.name:<34} {w.filters_kept[0]:>4}/{w.filters_kept[1]:<4} "
                     f"{w.channels_kept[0]:>4}/{w.channels_kept[1]:<4} "
                     f"{100 * w.element_sparsity:>8.2f} {100 * w.effective_sparsity:>8.2f}")
    lines.append("-" * len(header))
    lines.append(f"{'total (all conv/linear weights)':<34} {'':>9} {'':>9} "
                 f"{100 * report.element_sparsity:>8.2f} {100 * report.effective_sparsity:>8.2f}")
    lines.append("zeros %: zeros inside the remaining dense tensors (fine-grained; no speed-up on a dense "
                 "engine). gone %: share of the original weights removed or zeroed.")
    return "\n".join(lines)
