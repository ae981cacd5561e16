"""ONNX Runtime backend (CPUExecutionProvider): the same statistics and accuracy as OpenVINO.

``Latency`` comes from ORT's own profiler: the sum of the node kernel times that fall inside one
``model_run`` event, averaged over the profiled runs like OpenVINO's PERF_COUNT means.
``Throughput`` is sequential batch-1 runs with all intra-op threads (ORT has no throughput hint).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BenchmarkError
from .options import EngineInfo, MeasureOptions
from .profile import LayerProfile, LayerSample, build_profile
from .stats import LatencyStats, summarize, timed_run

#: Our device name -> ORT execution provider.
PROVIDERS = {"CPU": "CPUExecutionProvider"}
PRECISIONS = ("fp32", "auto")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_target(device: str, precision: str) -> None:
    """A BenchmarkError when ONNX Runtime here cannot run ``device`` at ``precision``."""
    if device not in PROVIDERS:
        raise BenchmarkError(f"ONNX Runtime device {device!r} is not supported: use "
                             f"{', '.join(PROVIDERS)}")
    if precision not in PRECISIONS:
        raise BenchmarkError(f"ONNX Runtime runs fp32 only, not {precision}: use --precision "
                             "fp32 or --backend openvino")


class OnnxRuntimeEngine:
    """One ONNX model in ONNX Runtime sessions on the CPU provider."""

    def __init__(self, onnx_path: Path, device: str, precision: str, options: MeasureOptions) -> None:
        import onnxruntime as ort

        check_target(device, precision)
        self.ort, self.path, self.options = ort, str(onnx_path), options
        self.device, self.precision = device, precision
        self.session = self._session(threads=options.threads)
        self.input_name = self.session.get_inputs()[0].name

    def _session(self, threads: int, profile_dir: str | None = None):
        so = self.ort.SessionOptions()
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        if profile_dir:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "ort")
        return self.ort.InferenceSession(self.path, so, providers=[PROVIDERS[self.device]])

    def info(self) -> EngineInfo:
        threads = self.options.threads or (os.cpu_count() or 1)
        return EngineInfo(
            backend="onnxruntime", device=self.device, device_name=cpu_name(),
            engine_version=self.ort.__version__, precision="fp32", requested_precision=self.precision,
            inference_precision="fp32",
            runtime_precisions={}, threads=threads, streams=1, pinning=None, batch_size=1,
        )

    def latency_samples(self, sample: np.ndarray, requests: int | None = None) -> np.ndarray:
        """Milliseconds of each timed ``session.run`` with the input fed from numpy (the full run,
        or one window of ``requests``, see ``stats.timed_run``)."""
        feed = {self.input_name: sample}
        return timed_run(lambda: self.session.run(None, feed), self.options, requests)

    def latency(self, sample: np.ndarray) -> LatencyStats:
        """Total_Latency statistics of :meth:`latency_samples`."""
        return summarize(self.latency_samples(sample), self.options.quiet_window)

    def profile(self, sample: np.ndarray) -> LayerProfile:
        """Per-node kernel times from ORT's profiler, grouped by ``model_run``."""
        feed = {self.input_name: sample}
        walls: list[float] = []
        with tempfile.TemporaryDirectory(prefix="edgeprune-ort-") as folder:
            session = self._session(self.options.threads, profile_dir=folder)
            for _ in range(self.options.warmup):
                session.run(None, feed)
            for _ in range(self.options.profile_repeats):
                start = time.perf_counter()
                session.run(None, feed)
                walls.append((time.perf_counter() - start) * 1e3)
            events = json.loads(Path(session.end_profiling()).read_text())
        runs = _runs_from_trace(events)[self.options.warmup:]
        return build_profile(runs, walls)

    def throughput(self, sample: np.ndarray) -> tuple[float, int]:
        """Images per second of back-to-back runs on all cores (one request at a time)."""
        session = self._session(threads=0)
        feed = {self.input_name: sample}
        for _ in range(self.options.warmup):
            session.run(None, feed)
        done, start = 0, time.perf_counter()
        while done < self.options.min_iters or time.perf_counter() - start < self.options.throughput_time_s:
            session.run(None, feed)
            done += 1
        return done * sample.shape[0] / (time.perf_counter() - start), 1

    def predictor(self, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        """Logits of a batch (the exported model has a dynamic batch axis)."""
        return lambda images: self.session.run(None, {self.input_name: images})[0]

    def ir_bytes(self) -> int | None:
        return None


def _runs_from_trace(events: list[dict]) -> list[list[LayerSample]]:
    """Node kernel events of a Chrome trace, split by the ``model_run`` events that contain them."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    grouped: list[list[LayerSample]] = [[] for _ in runs]
    starts = np.array([start for start, _ in runs])
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        index = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if index >= 0 and event["ts"] <= runs[index][1]:
            args = event.get("args", {})
            grouped[index].append((event["name"][: -len("_kernel_time")], args.get("op_name", ""),
                                   args.get("provider", ""), event["dur"] / 1e3))
    return grouped
