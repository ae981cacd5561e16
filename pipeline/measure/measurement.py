"""``measure``: one ONNX model on one target, to the figures every search decision rests on.

Definitions (kept under the seed's names for continuity):

- ``Latency`` (ms): sum of the per-layer execution times from the engine's profiling counters for
  one inference (OpenVINO PERF_COUNT real_time of executed layers; ORT node kernel times), each
  layer's time being its mean over ``profile_repeats`` profiled inferences after the warm-up, on a
  separate compiled model so that profiling does not slow the timed one. (OpenVINO's counters are
  running means, so a per-inference median is not available; the mean is what they give.) It
  leaves out everything between layers and around the request.
- ``Total_Latency`` (ms): wall time of one synchronous request end to end, including setting the
  input tensor and returning the output; batch 1, LATENCY hint, one stream. The figure is the
  quiet median (the lowest median of ``quiet_window`` consecutive requests, see stats.py), so that
  a neighbour's burst of work does not move it; ``latency.median`` over all requests sits beside it.
  With ``MeasureOptions.quiet_wait_s`` timing first waits out longer slow periods of a shared
  machine (interference.py); ``machine_slowdown`` records how slow the machine was when it began.
- ``Relative_Latency`` (with ``MeasureOptions.reference_onnx``): the model's request time over a
  reference model's, short windows of both timed in alternation (relative.py). The machine's slow
  periods move both alike, so this ratio is the steadiest figure to rank architectures by.
- ``Throughput`` (images/s): THROUGHPUT hint on all cores, an async queue of the engine's optimal
  number of requests, batch 1 (ORT: back-to-back runs on all intra-op threads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchmarkError
from ..messages import Target
from .accuracy import DeployedAccuracy, accuracy_gap, evaluate_logits
from .facts import OnnxFacts, onnx_facts
from .interference import wait_until_quiet
from .noise import measurement_flag, tail_ratio
from .options import EngineInfo, MeasureOptions
from .profile import LayerProfile
from .relative import RelativeLatency, relative_latency
from .stats import LatencyStats

log = logging.getLogger(__name__)

BACKENDS = ("openvino", "onnxruntime")


@dataclass
class Measurement:
    """Everything measured for one model on one target."""

    onnx_path: str
    engine: EngineInfo
    facts: OnnxFacts
    #: Total_Latency statistics (ms).
    latency: LatencyStats
    profile: LayerProfile | None
    throughput: float | None
    throughput_requests: int | None
    accuracy: DeployedAccuracy | None
    ir_bytes: int | None
    #: Set when deployed Top1 differs from options.torch_top1 by more than 0.5 points.
    accuracy_flag: str | None
    keep_layers: bool
    seconds: float
    #: The machine's slowdown when latency timing started (interference.py; 1.0: at its best) and
    #: the seconds spent waiting for it to fall to ``MeasureOptions.quiet_limit``.
    machine_slowdown: float = 1.0
    quiet_wait_s: float = 0.0
    #: Against ``MeasureOptions.reference_onnx``, when one was given.
    relative: RelativeLatency | None = None
    #: Why the kept timing is still noise after ``measure_attempts`` timings (noise.py), or None.
    measurement_flag: str | None = None
    measure_attempts: int = 1

    @property
    def layer_latency_ms(self) -> float | None:
        """``Latency``: sum of per-layer (mean) times for one inference."""
        return self.profile.latency_ms if self.profile else None

    def to_metrics(self) -> dict[str, Any]:
        """The figures under the metric names of docs/architecture.md."""
        e = self.engine
        metrics: dict[str, Any] = {
            "Latency": self.layer_latency_ms,
            "Total_Latency": self.latency.quiet_median,
            "Throughput": self.throughput,
            "latency": self.latency.to_dict(),
            "profiled_wall_ms": self.profile.wall_mean_ms if self.profile else None,
            "backend": e.backend,
            "device": e.device,
            "device_name": e.device_name,
            "precision": e.precision,
            "precision_requested": e.requested_precision,
            "inference_precision": e.inference_precision,
            "runtime_precisions": e.runtime_precisions,
            f"{e.backend}_version": e.engine_version,
            "batch_size": e.batch_size,
            "threads": e.threads,
            "streams": e.streams,
            "pinning": e.pinning,
            "throughput_requests": self.throughput_requests,
            "onnx_bytes": self.facts.onnx_bytes,
            "ir_bytes": self.ir_bytes,
            "params": self.facts.params,
            "macs": self.facts.macs,
            "measure_seconds": round(self.seconds, 3),
            "machine_slowdown": round(self.machine_slowdown, 3),
            "quiet_wait_s": round(self.quiet_wait_s, 1),
            "measurement_flag": self.measurement_flag,
            "measure_attempts": self.measure_attempts,
        }
        if self.relative is not None:
            metrics.update(self.relative.to_metrics())
        if self.accuracy is not None:
            metrics.update(Top1=self.accuracy.top1, Top5=self.accuracy.top5,
                           eval_count=self.accuracy.count)
        if self.accuracy_flag:
            metrics["accuracy_flag"] = self.accuracy_flag
        if self.keep_layers and self.profile is not None:
            metrics["per_layer"] = self.profile.to_dicts()
        return metrics


def _shape(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _check_images(path: Path, facts: OnnxFacts, images: np.ndarray | None,
                  labels: np.ndarray | None, what: str) -> None:
    if images is None:
        return
    expected = facts.input_shape[1:]
    if images.ndim != 4 or any(e is not None and e != got for e, got in zip(expected, images.shape[1:])):
        raise BenchmarkError(
            f"{path}: the model takes images of shape (C, H, W) = {_shape(expected)} but the {what} "
            f"images are {_shape(images.shape[1:])}: use data of the model's size or export the "
            "model for this data")
    if labels is None:
        return
    if len(labels) != len(images):
        raise BenchmarkError(f"{len(images)} {what} images but {len(labels)} labels: pass one label "
                             "per image")
    if facts.num_outputs and len(labels) and int(labels.max()) >= facts.num_outputs:
        raise BenchmarkError(f"{path}: the model has {facts.num_outputs} outputs but the labels go "
                             f"up to {int(labels.max())}: use data with the model's classes")


def check_target(target: Target) -> None:
    """A BenchmarkError, before any work, when the backend, device or precision cannot run here."""
    if target.backend == "openvino":
        from .openvino_backend import check_target as check_openvino

        check_openvino(target.device, target.precision)
    elif target.backend == "onnxruntime":
        from .onnxruntime_backend import check_target as check_onnxruntime

        check_onnxruntime(target.device, target.precision)
    else:
        raise BenchmarkError(f"unknown backend {target.backend!r}: use one of {', '.join(BACKENDS)}")


def engine_version(backend: str) -> str:
    """The installed version of ``backend``'s engine, e.g. ``OpenVINO 2025.3.0-...``."""
    if backend == "openvino":
        import openvino

        return f"OpenVINO {openvino.get_version()}"
    if backend == "onnxruntime":
        import onnxruntime

        return f"ONNX Runtime {onnxruntime.__version__}"
    raise BenchmarkError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


def open_engine(onnx_path: Path, target: Target, options: MeasureOptions):
    """The backend engine for ``target``, or a BenchmarkError naming the choices."""
    check_target(target)
    if target.backend == "openvino":
        from .openvino_backend import OpenVinoEngine

        return OpenVinoEngine(onnx_path, target.device, target.precision, options,
                              options.calibration_images)
    from .onnxruntime_backend import OnnxRuntimeEngine

    return OnnxRuntimeEngine(onnx_path, target.device, target.precision, options)


#: The compiled reference models of this process and their input shapes, by (file, its mtime,
#: backend, device, precision, and the options the latency model is compiled with): a sweep
#: measures every architecture against the unpruned network of its base, so each is loaded,
#: checked and compiled once and kept warm.
_REFERENCE_ENGINES: dict[tuple, tuple[Any, list]] = {}
#: Compiled references kept at once: one per base network a sweep over ``model`` may search.
MAX_REFERENCE_ENGINES = 5


def reference_engine(onnx_path: Path, target: Target, options: MeasureOptions, input_shape: list):
    """The compiled reference model for ``Relative_Latency`` (compiled once per process)."""
    path = Path(onnx_path)
    if not path.is_file():
        onnx_facts(path)  # raises the BenchmarkError that names the missing file
    key = (str(path.resolve()), path.stat().st_mtime_ns, target.backend, target.device,
           target.precision, options.streams, options.threads, options.pin)
    if key not in _REFERENCE_ENGINES:
        facts = onnx_facts(path)  # a corrupt reference fails with its own message
        while len(_REFERENCE_ENGINES) >= MAX_REFERENCE_ENGINES:  # the least recently used goes
            del _REFERENCE_ENGINES[next(iter(_REFERENCE_ENGINES))]
        _REFERENCE_ENGINES[key] = (open_engine(path, target, options), facts.input_shape)
    engine, reference_shape = _REFERENCE_ENGINES.pop(key)
    _REFERENCE_ENGINES[key] = (engine, reference_shape)  # now the most recently used
    if reference_shape[1:] != input_shape[1:]:
        raise BenchmarkError(f"reference model {path} takes inputs {_shape(reference_shape[1:])} "
                             f"but the model takes {_shape(input_shape[1:])}: use a reference of "
                             "the same input size (e.g. the unpruned model)")
    return engine


def measure(onnx_path: Path | str, target: Target, eval_images: np.ndarray | None = None,
            eval_labels: np.ndarray | None = None,
            options: MeasureOptions | None = None) -> Measurement:
    """Latency statistics, layer profile, throughput, sizes and (given images) deployed accuracy.

    ``eval_images`` are normalised float32 NCHW (``pipeline.data.to_tensor_batch``). Any problem the
    user can fix (missing or corrupt file, wrong input size, unknown device) is a BenchmarkError
    raised before anything is measured.
    """
    started = time.perf_counter()
    options = options or MeasureOptions()
    path = Path(onnx_path)
    check_target(target)
    facts = onnx_facts(path)
    _check_images(path, facts, eval_images, eval_labels, "evaluation")
    _check_images(path, facts, options.calibration_images, None, "calibration")
    image_shape = [d for d in facts.input_shape[1:] if d is not None]
    if len(image_shape) < len(facts.input_shape) - 1:
        raise BenchmarkError(f"{path}: input {facts.input_shape} has a dynamic axis besides the "
                             "batch: export the model with a fixed image size")
    engine = open_engine(path, target, options)
    # The reference is checked and compiled before anything is timed, so a bad one fails at once.
    reference = (reference_engine(Path(options.reference_onnx), target, options, facts.input_shape)
                 if options.reference_onnx else None)
    if eval_images is not None and len(eval_images):
        sample = np.ascontiguousarray(eval_images[:1], dtype=np.float32)
    else:
        sample = np.random.default_rng(0).standard_normal([1, *image_shape],
                                                          dtype=np.float32)
    info = engine.info()
    log.info("measuring %s on %s %s (%s)", path.name, info.backend, info.device, info.precision)
    tries = 1 + max(0, options.remeasure)
    attempts = [_time_latency(engine, reference, sample, info.backend, options)]
    while attempts[-1].flag is not None and len(attempts) < tries:
        log.warning("%s: %s; timing again (%d of %d)", path.name, attempts[-1].flag,
                    len(attempts) + 1, tries)
        attempts.append(_time_latency(engine, reference, sample, info.backend, options))
    timing = min(attempts, key=lambda a: (a.flag is not None, tail_ratio(a.latency)))
    throughput, requests = engine.throughput(sample) if options.throughput else (None, None)
    accuracy = flag = None
    if eval_images is not None and eval_labels is not None and len(eval_images):
        batch = min(options.accuracy_batch, len(eval_images))
        accuracy = evaluate_logits(engine.predictor(batch), eval_images, eval_labels, batch)
        if options.torch_top1 is not None:
            flag = accuracy_gap(accuracy.top1, options.torch_top1)
            if flag:
                log.warning(flag)
    return Measurement(
        onnx_path=str(path), engine=info, facts=facts, latency=timing.latency,
        profile=timing.profile, throughput=throughput, throughput_requests=requests,
        accuracy=accuracy, ir_bytes=engine.ir_bytes(), accuracy_flag=flag,
        keep_layers=options.profile_layers, seconds=time.perf_counter() - started,
        machine_slowdown=timing.slowdown, quiet_wait_s=sum(a.waited for a in attempts),
        relative=timing.relative, measurement_flag=timing.flag, measure_attempts=len(attempts),
    )


@dataclass
class _Timing:
    """One attempt at the latency figures, with the noise rule's verdict on it."""

    latency: LatencyStats
    profile: LayerProfile | None
    relative: RelativeLatency | None
    slowdown: float
    waited: float
    flag: str | None


def _time_latency(engine: Any, reference: Any, sample: np.ndarray, backend: str,
                  options: MeasureOptions) -> _Timing:
    """Total_Latency, the layer profile and (with a reference) Relative_Latency, timed once."""
    slowdown, waited = wait_until_quiet(options.quiet_wait_s, options.quiet_limit)
    latency = engine.latency(sample)
    profile = engine.profile(sample)
    relative = None
    if reference is not None and options.reference_onnx:  # the reference is compiled from that file
        window = options.relative_window
        relative = relative_latency(lambda: engine.latency_samples(sample, window),
                                    lambda: reference.latency_samples(sample, window),
                                    options.relative_polls, Path(options.reference_onnx).name)
    flag = measurement_flag(latency, profile.latency_ms if profile else None, backend,
                            relative.spread if relative else None, options.tail_limit)
    return _Timing(latency, profile, relative, slowdown, waited, flag)
