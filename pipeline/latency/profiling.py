"""``profile_latency``: time random architectures of a model on a target and fit a LatencyModel.

A shared machine's load moves every latency by 30% and more for seconds to minutes at a time, and
a fit on raw milliseconds learns that load. So the unpruned model is measured every
``reference_every``-th job (and first and last), each architecture's Total_Latency is divided by
the mean of the unpruned measurements just before and just after it (the nearest in time), and
the fit is on those ratios times the median unpruned Total_Latency: the prediction is in ms of
the typical machine state, and its ratio to ``reference_ms`` is what held still.

Jobs seconds apart still see different machines when neighbours come and go within seconds (on
the shared 2-core VM a run of torch work next door doubles OpenVINO's latency). So when the
measurement carries a ``Relative_Latency`` against the unpruned model (the consumer timed both
in alternating windows: ``MeasureOptions.reference_onnx`` = ``unpruned_onnx``), that ratio is
used instead: the in-process profile (``edgeprune latency profile`` without ``--redis``) does so.
"""

from __future__ import annotations

import datetime
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import BenchmarkError
from ..export import export_onnx
from ..messages import Target
from ..settings import Settings
from .architectures import ROUND_CHOICES, build_architecture, random_schedules
from .features import SIMD_BLOCKS, FeatureSpec, groups_of
from .fit import fit_errors, fit_nnls
from .model import FitInfo, LatencyModel
from .shapes import LayerShape, shapes_of_module, shapes_of_onnx

if TYPE_CHECKING:
    from ..measure import MeasureOptions

#: measure(onnx_path) -> metrics under the result names (``Total_Latency`` at least).
MeasureFn = Callable[[Path], dict[str, Any]]
#: A measurement is left out of the fit when its error exceeds this many times the median error
#: of the fit on all, and at least OUTLIER_FLOOR.
OUTLIER_FACTOR = 4.0
OUTLIER_FLOOR = 0.15
#: Default number of random architectures a profile measures.
DEFAULT_ARCHS = 40
BRACKETED = ("Total_Latency / mean of the unpruned measurements just before and after "
             "(every {every}th job) x median unpruned Total_Latency")
RELATIVE = "Relative_Latency against the unpruned model (alternating windows) x median unpruned Total_Latency"


@dataclass
class Sample:
    """One measured architecture: its layers, and its latency on the profile's scale."""

    shapes: list[LayerShape]
    ratio: float
    spec: dict[str, Any] = field(default_factory=dict)
    #: The unpruned model, which every ratio is relative to.
    anchor: bool = False


def reference_positions(count: int, every: int) -> list[bool]:
    """Which of the jobs of ``count`` architectures are the unpruned reference: the first, every
    ``every``-th, and the last, so that every architecture has one on each side."""
    order: list[bool] = [True]
    for index in range(count):
        order.append(False)
        if (index + 1) % (every - 1) == 0 or index == count - 1:
            order.append(True)
    return order


def normalised_ratios(order: Sequence[bool], latencies: Sequence[float]) -> list[float]:
    """Each architecture's latency over the mean of the reference measurements bracketing it."""
    ratios = []
    for position, is_reference in enumerate(order):
        if is_reference:
            continue
        before = next(latencies[i] for i in range(position, -1, -1) if order[i])
        after = next((latencies[i] for i in range(position, len(order)) if order[i]), before)
        ratios.append(latencies[position] / ((before + after) / 2))
    return ratios


def noise_floor(reference_ms: Sequence[float]) -> float:
    """Median |ratio - 1| of consecutive measurements of the same (unpruned) model."""
    values = np.asarray(reference_ms, dtype=float)
    if len(values) < 2:
        return 0.0
    return float(np.median(np.abs(values[1:] / values[:-1] - 1.0)))


def fit_latency_model(samples: Sequence[Sample], reference_ms: float, target: Target, model_name: str,
                      blocks: Sequence[int] = SIMD_BLOCKS) -> LatencyModel:
    """The LatencyModel fitted on ``samples``, with the SIMD block whose leave-one-out error is lowest."""
    if len(samples) < 3:
        raise BenchmarkError(f"{len(samples)} measured architectures are too few to fit a latency "
                             "model: profile at least 2 random architectures (--archs)")
    groups = groups_of([s for sample in samples for s in sample.shapes])
    y = np.asarray([s.ratio for s in samples]) * reference_ms
    # The unpruned model is the anchor every ratio was measured against (its own is 1 by
    # definition): weighted as all the others together, the fit goes through it.
    weights = np.asarray([len(samples) if s.anchor else 1.0 for s in samples])
    anchors = np.asarray([s.anchor for s in samples])
    best: tuple[float, FeatureSpec, np.ndarray, Any] | None = None
    block_errors: dict[str, float] = {}
    outliers: list[int] = []
    for block in blocks:
        spec = FeatureSpec(tuple(groups), block)
        x = spec.matrix([s.shapes for s in samples])
        keep = np.ones(len(y), dtype=bool)
        coefficients = fit_nnls(x, y, weights)
        # A measurement a burst of load spoiled (seen: a 0.7x architecture timed at 0.22x) would
        # pull every coefficient: the worst one is left out while it is far off the fit of the
        # others (never the anchor, at most a quarter of the samples).
        while (~keep).sum() < len(y) // 4:
            residual = np.where(keep & ~anchors, np.abs(x @ coefficients / y - 1.0), 0.0)
            worst = int(np.argmax(residual))
            kept_residual = residual[keep & ~anchors]
            limit = max(OUTLIER_FLOOR, OUTLIER_FACTOR * float(np.median(kept_residual)))
            if residual[worst] <= limit:
                break
            keep[worst] = False
            coefficients = fit_nnls(x[keep], y[keep], weights[keep])
        errors = fit_errors(x[keep], y[keep], coefficients, weights[keep])
        block_errors[str(block)] = round(errors.loo_median, 5)
        if best is None or errors.loo_median < best[0]:
            best = (errors.loo_median, spec, coefficients, errors)
            outliers = [int(i) for i in np.flatnonzero(~keep)]
    assert best is not None
    _, spec, coefficients, errors = best
    fit = FitInfo(n_architectures=len(samples), residual_median=errors.residual_median,
                  residual_p90=errors.residual_p90, loo_median=errors.loo_median,
                  loo_p90=errors.loo_p90, block_errors=block_errors, outliers=outliers)
    return LatencyModel(target=target, model_name=model_name, groups=list(spec.groups),
                        simd_block=spec.simd_block, coefficients=[float(c) for c in coefficients],
                        reference_ms=float(reference_ms), fit=fit)


def profile_options(reference_onnx: Path | None = None, fast: bool = False) -> "MeasureOptions":
    """Short latency-only MeasureOptions for profiling (no throughput, no layer table kept): a
    ResNet56 architecture in about a second of timing on a quiet 2-core machine. With
    ``reference_onnx`` each one is also timed against it in alternation (Relative_Latency); a
    timing the noise rule flags (e.g. the ratio's spread over 10%) is taken once more.
    ``fast``: shorter still, for tests (noisy)."""
    from ..measure import MeasureOptions

    values: dict[str, Any] = dict(warmup=20, min_iters=100, min_time_s=0.2, throughput=False,
                                  profile_repeats=5, profile_layers=False, remeasure=1,
                                  relative_polls=10, relative_window=30)
    if fast:
        values.update(warmup=5, min_iters=30, min_time_s=0.05, relative_polls=6, relative_window=15)
    return MeasureOptions(reference_onnx=str(reference_onnx) if reference_onnx else None, **values)


def export_unpruned(model_name: str, path: Path) -> Path:
    """The unpruned ``model_name`` (random weights) exported to ``path``, as profile_latency times it."""
    return export_onnx(build_architecture(model_name), path).path


def _relative(metrics: dict[str, Any], reference: Path) -> float | None:
    """The measurement's Relative_Latency when it was timed against ``reference``, else None."""
    value = metrics.get("Relative_Latency")
    if metrics.get("relative_reference") != reference.name or not isinstance(value, (int, float)):
        return None
    return float(value) if value > 0 else None


def _total_latency(metrics: dict[str, Any], path: Path) -> float:
    value = metrics.get("Total_Latency")
    if not isinstance(value, (int, float)) or not value > 0:
        raise BenchmarkError(f"the measurement of {path.name} has no Total_Latency (got {value!r}): "
                             "the consumer must time latency (not --check-only)")
    return float(value)


def profile_latency(model_name: str, target: Target, settings: Settings, measure: MeasureFn,
                    archs: int = DEFAULT_ARCHS, seed: int = 0, on_progress: Callable[[str], None] | None = None,
                    reference_every: int = 4, round_choices: Sequence[int] = ROUND_CHOICES,
                    unpruned_onnx: Path | None = None) -> LatencyModel:
    """Measure the unpruned ``model_name`` and ``archs`` random pruned architectures with
    ``measure`` (on ``target``), and fit a LatencyModel (see the module docstring).

    Weights are random (timing does not depend on them); each architecture is pruned by
    ``prune_one_shot`` and exported with ``export_onnx`` as a search would. ``unpruned_onnx``:
    the unpruned model's file to time (``export_unpruned``), e.g. because ``measure`` times every
    model against it; by default it is exported to a temporary folder.
    """
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if reference_every < 2:
        raise ValueError(f"reference_every must be at least 2, got {reference_every}")
    started = time.perf_counter()
    say = on_progress or (lambda line: None)
    schedules = random_schedules(model_name, archs, seed, round_choices)
    order = reference_positions(archs, reference_every)
    latencies: list[float] = []
    shapes: list[list[LayerShape]] = []
    metrics: dict[str, Any] = {}
    relative: list[float | None] = []
    with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as folder:
        unpruned_path = Path(unpruned_onnx or export_unpruned(model_name, Path(folder) / "unpruned.onnx"))
        unpruned_shapes = shapes_of_onnx(unpruned_path)
        if unpruned_shapes != shapes_of_module(build_architecture(model_name)):
            raise BenchmarkError(f"{unpruned_path} is not an unpruned {model_name}: pass the file "
                                 "export_unpruned wrote, or none")
        pending = iter(schedules)
        done = 0
        for is_reference in order:
            if is_reference:
                path, layers, what = unpruned_path, unpruned_shapes, "unpruned"
            else:
                text, spec = next(pending)
                done += 1
                path = export_onnx(build_architecture(model_name, text), Path(folder) / f"arch{done}.onnx").path
                layers = shapes_of_onnx(path)
                what = (f"arch {done}/{archs} ({spec['blocks_removed']} blocks removed, conv1 "
                        f"sparsity {spec['stage_sparsity']}, round_to {spec['round_to']})")
            metrics = measure(path)
            latencies.append(_total_latency(metrics, path))
            relative.append(_relative(metrics, unpruned_path))
            shapes.append(layers)
            against = f", {relative[-1]:.3f}x the unpruned model" if relative[-1] and not is_reference else ""
            say(f"{what}: Total_Latency {latencies[-1]:.3f} ms{against}")
            if not is_reference:
                path.unlink()
    references = [ms for ms, ref in zip(latencies, order) if ref]
    reference_ms = float(np.median(references))
    pruned_relative = [r for r, ref in zip(relative, order) if not ref]
    known_relative = [r for r in pruned_relative if r is not None]
    use_relative = len(known_relative) == len(pruned_relative)
    ratios = known_relative if use_relative else normalised_ratios(order, latencies)
    samples = [Sample(unpruned_shapes, 1.0, anchor=True)]
    samples += [Sample(layers, ratio, spec) for layers, ratio, (_, spec)
                in zip([s for s, ref in zip(shapes, order) if not ref], ratios, schedules)]
    model = fit_latency_model(samples, reference_ms, target, model_name)
    model.fit.n_measurements = len(latencies)
    model.fit.seed, model.fit.round_choices = seed, list(round_choices)
    model.fit.ratios = [round(s.ratio, 5) for s in samples]
    # With Relative_Latency the unpruned jobs were timed against a second copy of themselves:
    # their distance from 1 is the noise of the very ratios the fit is on.
    own = [r for r, ref in zip(relative, order) if ref and r is not None]
    model.fit.noise_floor = (float(np.median(np.abs(np.asarray(own) - 1.0))) if use_relative and own
                             else noise_floor(references))
    model.fit.normalisation = RELATIVE if use_relative else BRACKETED.format(every=reference_every)
    model.fit.machine = f"{platform.node()} ({platform.machine()})"
    model.fit.device_name = str(metrics.get("device_name", ""))
    model.fit.engine_version = str(metrics.get(f"{target.backend}_version", ""))
    model.fit.date = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    model.fit.seconds = round(time.perf_counter() - started, 1)
    return model
