"""OpenVINO backend: compile an ONNX model for a device and precision, time it, profile it, evaluate it.

Three compiled models, so that no measurement disturbs another: a latency one (LATENCY hint, one
stream, the timed figure), a profiling one (same settings plus PERF_COUNT, the layer sums), and a
throughput one (THROUGHPUT hint, all cores, an async queue). Accuracy uses a fourth, reshaped to a
large batch, at the same precision.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BenchmarkError
from .facts import ir_bytes
from .options import EngineInfo, MeasureOptions
from .profile import LayerProfile, LayerSample, build_profile
from .quantize import quantize_int8
from .stats import LatencyStats, summarize, timed_run

log = logging.getLogger(__name__)

#: Our precision names -> OpenVINO INFERENCE_PRECISION_HINT. int8 quantizes the graph with NNCF
#: and runs the layers left in float at f32, so that int8 is compared with a clean f32 baseline.
PRECISION_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16",
                                          "int8": "f32", "auto": None}


def _core():
    import openvino as ov

    return ov.Core()


def check_target(device: str, precision: str, core=None) -> None:
    """A BenchmarkError when ``precision`` is unknown or ``device`` is not on this machine."""
    if precision not in PRECISION_HINTS:
        raise BenchmarkError(f"unknown precision {precision!r}: use one of "
                             f"{', '.join(PRECISION_HINTS)}")
    available = (core or _core()).available_devices
    if device not in available and device.split(".")[0] not in available:
        raise BenchmarkError(f"OpenVINO device {device!r} is not available on this machine: use one "
                             f"of {', '.join(available)}")


class OpenVinoEngine:
    """One ONNX model compiled by OpenVINO for one device and precision."""

    def __init__(self, onnx_path: Path, device: str, precision: str, options: MeasureOptions,
                 calibration_images: np.ndarray | None = None) -> None:
        import openvino as ov

        self.ov = ov
        self.core = _core()
        check_target(device, precision, self.core)
        self.device, self.precision, self.options = device, precision, options
        self.model = self.core.read_model(str(onnx_path))
        self.input_shape = [int(d) for d in self._static_shape(1)]
        self.model.reshape({self.model.inputs[0].any_name: self.input_shape})
        if precision == "int8":
            self.model = quantize_int8(self.model, calibration_images, options.calibration_size)
        self.latency_model = self._compile("LATENCY")

    # -- compilation -------------------------------------------------------------------------
    def _static_shape(self, batch: int) -> list[int]:
        shape = self.model.inputs[0].get_partial_shape()
        dims = [batch] + [d.get_length() if d.is_static else -1 for d in list(shape)[1:]]
        if -1 in dims:
            raise BenchmarkError(f"model input {shape} has a dynamic axis besides the batch: export "
                                 "it with a fixed image size")
        return dims

    def _config(self, hint: str, profile: bool = False) -> dict:
        config: dict = {"PERFORMANCE_HINT": hint}
        if PRECISION_HINTS[self.precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[self.precision]
        if hint == "LATENCY":
            config["NUM_STREAMS"] = self.options.streams
            if self.options.threads:
                config["INFERENCE_NUM_THREADS"] = self.options.threads
            if self.options.pin is not None and self.device.startswith("CPU"):
                config["ENABLE_CPU_PINNING"] = self.options.pin
        if profile:
            config["PERF_COUNT"] = True
        return config

    def _compile(self, hint: str, profile: bool = False, model=None):
        try:
            return self.core.compile_model(model or self.model, self.device,
                                           self._config(hint, profile))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unknown error"
            raise BenchmarkError(f"OpenVINO could not compile the model for {self.device} at "
                                 f"{self.precision} ({first}): try --precision fp32 or another "
                                 "device") from None

    # -- facts ----------------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        compiled = self.latency_model
        actual_name = _precision_name(compiled)
        if self.precision not in ("auto", "int8", actual_name):
            log.warning("asked for %s but %s runs %s: the figures are recorded as %s",
                        self.precision, self.device, actual_name, actual_name)
        runtime: Counter[str] = Counter()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "runtimePrecision" in info and op.get_type_name() not in ("Parameter", "Result",
                                                                         "Const", "Constant"):
                runtime[info["runtimePrecision"].astype(str)] += 1
        return EngineInfo(
            backend="openvino",
            device=self.device,
            device_name=str(self.core.get_property(self.device, "FULL_DEVICE_NAME")),
            engine_version=self.ov.get_version(),
            precision="int8" if self.precision == "int8" else actual_name,
            requested_precision=self.precision,
            inference_precision=actual_name,
            runtime_precisions=dict(runtime),
            threads=int(compiled.get_property("INFERENCE_NUM_THREADS")),
            streams=int(compiled.get_property("NUM_STREAMS")),
            pinning=bool(compiled.get_property("ENABLE_CPU_PINNING")) if self.device.startswith(
                "CPU") else None,
            batch_size=self.input_shape[0],
        )

    def ir_bytes(self) -> int:
        """Size of the model (quantized when int8) saved as IR with full-precision weights."""
        with tempfile.TemporaryDirectory(prefix="edgeprune-ir-") as folder:
            xml = Path(folder) / "model.xml"
            # compress_to_fp16=False: the IR holds the weights the engine actually reads.
            self.ov.save_model(self.model, str(xml), compress_to_fp16=False)
            return ir_bytes(xml)

    # -- measurements --------------------------------------------------------------------------
    def latency_samples(self, sample: np.ndarray, requests: int | None = None) -> np.ndarray:
        """Milliseconds of each timed synchronous request, including setting the input (the full
        run, or one window of ``requests``, see ``stats.timed_run``)."""
        request = self.latency_model.create_infer_request()
        return timed_run(lambda: request.infer({0: sample}), self.options, requests)

    def latency(self, sample: np.ndarray) -> LatencyStats:
        """Total_Latency statistics of :meth:`latency_samples`."""
        return summarize(self.latency_samples(sample), self.options.quiet_window)

    def profile(self, sample: np.ndarray) -> LayerProfile:
        """Per-layer mean times over ``profile_repeats`` inferences of a separate PERF_COUNT model.

        OpenVINO's CPU counters are running means since compilation (whole microseconds), so the
        warm-up is taken out by differencing totals: (mean_after * n_after - mean_before * n_before)
        / repeats. The resolution is then about 1 us / repeats per layer.
        """
        request = self._compile("LATENCY", profile=True).create_infer_request()
        warmup, repeats = max(self.options.warmup, 1), self.options.profile_repeats
        for _ in range(warmup):
            request.infer({0: sample})
        before = self._layer_totals(request, warmup)
        walls: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            request.infer({0: sample})
            walls.append((time.perf_counter() - start) * 1e3)
        after = self._layer_totals(request, warmup + repeats)
        # The counters' whole-microsecond rounding can make a near-zero layer's difference slightly
        # negative; a layer cannot take negative time, so it is floored at zero.
        means: list[LayerSample] = [
            (name, kind, kernel, max(0.0, (total - before.get(name, ("", "", 0.0))[2]) / repeats))
            for name, (kind, kernel, total) in after.items()]
        return build_profile([means], walls, inferences=repeats)

    def _layer_totals(self, request, inferences: int) -> dict[str, tuple[str, str, float]]:
        """Total ms per executed layer over all ``inferences`` so far (running mean x count)."""
        executed = self.ov.ProfilingInfo.Status.EXECUTED
        return {p.node_name: (p.node_type, p.exec_type, p.real_time.total_seconds() * 1e3 * inferences)
                for p in request.profiling_info if p.status == executed}

    def throughput(self, sample: np.ndarray) -> tuple[float, int]:
        """Images per second with the THROUGHPUT hint on all cores, and the number of requests."""
        compiled = self._compile("THROUGHPUT")
        queue = self.ov.AsyncInferQueue(compiled, compiled.get_property(
            "OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        for request in queue:
            request.set_input_tensor(self.ov.Tensor(sample.copy()))
        batch = sample.shape[0]
        for _ in range(max(len(queue), self.options.warmup)):
            queue.start_async()
        queue.wait_all()
        done = 0
        start = time.perf_counter()
        while done < self.options.min_iters or time.perf_counter() - start < self.options.throughput_time_s:
            queue.start_async()
            done += 1
        queue.wait_all()
        return done * batch / (time.perf_counter() - start), len(queue)

    def predictor(self, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        """A function from a (batch_size, C, H, W) array to logits, through the compiled model."""
        model = self.model.clone()
        model.reshape({model.inputs[0].any_name: self._static_shape(batch_size)})
        request = self._compile("LATENCY", model=model).create_infer_request()
        return lambda images: request.infer({0: images})[0]


def _precision_name(compiled) -> str:
    """Our name (fp32, bf16, fp16) of the compiled model's actual INFERENCE_PRECISION_HINT."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)
