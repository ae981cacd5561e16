"""Per-layer profiles: time, layer type and kernel of each executed layer, and two models side by side.

Backends hand over one list of ``(name, layer_type, exec_type, ms)`` per profiled inference; here
they become per-layer means, their sum (the ``Latency`` figure) and tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

#: One executed layer of one inference: (name, layer type, kernel, milliseconds).
LayerSample = tuple[str, str, str, float]


@dataclass
class LayerTime:
    """One executed layer: mean time per inference over the profiled inferences."""

    name: str
    layer_type: str
    #: The kernel the engine picked (OpenVINO exec_type such as ``brgconv_avx512_f32``; ORT provider).
    exec_type: str
    ms: float


@dataclass
class LayerProfile:
    """Per-layer mean times, and the wall time of each profiled inference around its call."""

    layers: list[LayerTime]
    #: How many inferences the layer means cover.
    inferences: int = 0
    #: Wall time of the same inferences measured around the synchronous call (ms).
    wall_ms: list[float] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        """The ``Latency`` figure: the sum of per-layer times of one (the mean) inference."""
        return float(sum(layer.ms for layer in self.layers))

    @property
    def wall_mean_ms(self) -> float:
        """Mean wall time of the profiled inferences: the like-for-like partner of latency_ms."""
        return float(np.mean(self.wall_ms)) if self.wall_ms else float("nan")

    def to_dicts(self) -> list[dict]:
        return [asdict(layer) for layer in self.layers]


def build_profile(runs: Sequence[Sequence[LayerSample]], wall_ms: Sequence[float],
                  inferences: int | None = None) -> LayerProfile:
    """Mean time per layer (layers in first-seen order) over ``inferences`` inferences.

    ``runs`` holds one sample list per inference (ORT), or a single list of per-inference means
    (OpenVINO, whose counters are running means) with ``inferences`` given.
    """
    count = inferences or len(runs)
    order: dict[str, tuple[str, str]] = {}
    totals: dict[str, float] = {}
    for run in runs:
        for name, layer_type, exec_type, ms in run:
            order.setdefault(name, (layer_type, exec_type))
            totals[name] = totals.get(name, 0.0) + ms
    scale = 1.0 / len(runs) if runs else 0.0  # every run is one inference or one mean inference
    layers = [LayerTime(name, kind, kernel, totals[name] * scale) for name, (kind, kernel) in order.items()]
    return LayerProfile(layers=layers, inferences=count, wall_ms=list(map(float, wall_ms)))


@dataclass
class LayerComparison:
    """One layer of a model against the same-named layer of a baseline (None where absent)."""

    name: str
    layer_type: str
    exec_type: str
    ms: float | None
    baseline_exec_type: str | None
    baseline_ms: float | None

    @property
    def speedup(self) -> float | None:
        """baseline time / time: above 1 means the layer got faster."""
        if not self.ms or self.baseline_ms is None:
            return None
        return self.baseline_ms / self.ms


def compare_profiles(profile: LayerProfile, baseline: LayerProfile) -> list[LayerComparison]:
    """Match layers by name: the model's layers in order, then the baseline's unmatched ones."""
    base = {layer.name: layer for layer in baseline.layers}
    rows = []
    for layer in profile.layers:
        other = base.pop(layer.name, None)
        rows.append(LayerComparison(layer.name, layer.layer_type, layer.exec_type, layer.ms,
                                    other.exec_type if other else None,
                                    other.ms if other else None))
    rows += [LayerComparison(b.name, b.layer_type, "", None, b.exec_type, b.ms) for b in base.values()]
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_profile(profile: LayerProfile) -> str:
    """A text table: layer, type, kernel, mean ms, share of the layer sum."""
    total = sum(layer.ms for layer in profile.layers) or 1.0
    rows = [(layer.name, layer.layer_type, layer.exec_type, _ms(layer.ms),
             f"{100 * layer.ms / total:.1f}%") for layer in profile.layers]
    rows.append(("TOTAL (Latency)", "", "", _ms(total), "100.0%"))
    return _table(("layer", "type", "kernel", "ms", "share"), rows)


def format_comparison(rows: Sequence[LayerComparison]) -> str:
    """A text table of :func:`compare_profiles`: both times and the per-layer speed-up."""
    body = [(r.name, r.layer_type, r.exec_type or "-", _ms(r.ms), r.baseline_exec_type or "-",
             _ms(r.baseline_ms), "-" if r.speedup is None else f"{r.speedup:.2f}x") for r in rows]
    total = sum(r.ms or 0.0 for r in rows)
    base_total = sum(r.baseline_ms or 0.0 for r in rows)
    body.append(("TOTAL", "", "", _ms(total), "", _ms(base_total),
                 f"{base_total / total:.2f}x" if total else "-"))
    return _table(("layer", "type", "kernel", "ms", "baseline kernel", "baseline ms", "speed-up"),
                  body)
