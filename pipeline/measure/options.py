"""What a measurement may be told (MeasureOptions) and what an engine reports about itself (EngineInfo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .interference import DISTURBED
from .noise import TAIL_LIMIT
from .stats import QUIET_WINDOW


@dataclass
class MeasureOptions:
    """How long and how to measure. The defaults are tuned for repeatable medians on a small CPU.

    Timing stops only when BOTH ``min_iters`` and ``min_time_s`` are reached: the count bounds the
    width of the median's confidence interval (about +/-3% of the ranks at 1,000 samples), the time
    averages over the scheduler and frequency changes of a shared machine (a few seconds smooths
    out bursts of neighbours' work), and ``quiet_window`` sets the windows of the quiet median that
    ``Total_Latency`` reports (see stats.py). See benchmarks/bench_repeatability.py for the figures.
    """

    #: Uncounted inferences before timing (first inferences allocate and tune kernels).
    warmup: int = 50
    min_iters: int = 1000
    min_time_s: float = 3.0
    #: Throughput run length with the THROUGHPUT hint (at least min_iters requests too).
    throughput_time_s: float = 3.0
    #: Consecutive timed requests per window of the quiet median (Total_Latency).
    quiet_window: int = QUIET_WINDOW
    #: Seconds to wait, before timing, for the machine to run at its best speed again (a reference
    #: kernel's slowdown <= ``quiet_limit``, see interference.py); 0 times at once. The slowdown
    #: at the start of timing is recorded either way (``machine_slowdown``).
    quiet_wait_s: float = 0.0
    quiet_limit: float = DISTURBED
    #: ONNX model to time in alternation with the measured one for ``Relative_Latency`` (see
    #: relative.py; usually the unpruned model); None skips it. ``relative_polls`` windows of
    #: ``relative_window`` requests of each.
    reference_onnx: str | None = None
    relative_polls: int = 20
    relative_window: int = 50
    #: Measure Throughput at all (it costs throughput_time_s).
    throughput: bool = True
    #: Profiled inferences whose per-layer times are medianed into ``Latency``.
    profile_repeats: int = 50
    #: Keep the per-layer table in the Measurement (``per_layer`` in metrics). On by default: the
    #: profile is taken anyway for ``Latency``, and reports compare the best trial's layers with
    #: the unpruned model's.
    profile_layers: bool = True
    #: Latency model settings: streams, threads (0: the engine's choice), CPU pinning (None: default).
    streams: int = 1
    threads: int = 0
    pin: bool | None = True
    #: Batch of the compiled model that computes deployed accuracy.
    accuracy_batch: int = 500
    #: INT8 calibration images (normalised float32 NCHW from the TRAIN split) and how many to use.
    calibration_images: np.ndarray | None = None
    calibration_size: int = 300
    #: PyTorch Top1 of the same model, to flag a deployed accuracy that differs by > 0.5 points.
    torch_top1: float | None = None
    #: Times to re-time the latency figures when the noise rule flags them (noise.py); the
    #: steadiest attempt is kept, and still flagged if every attempt was noise.
    remeasure: int = 2
    #: p90 / quiet median above which the noise rule flags a timing.
    tail_limit: float = TAIL_LIMIT

    @classmethod
    def single_run(cls, **overrides: Any) -> "MeasureOptions":
        """One model measured for a person waiting at the terminal (``edgeprune run``): a
        second of timing instead of three, half a second of throughput, 20 profiled inferences and
        no re-timing (a noisy figure is flagged in the table, and ``--full-measure`` re-times it:
        one re-timing cost 2-3 s, a sixth of the run); the speed-up over a reference is the steady
        figure (alternating windows), so the absolute ones need less time here than where a search
        ranks by them."""
        values: dict[str, Any] = dict(min_iters=500, min_time_s=1.0, throughput_time_s=0.5, profile_repeats=20,
                                      relative_polls=10, remeasure=0)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def fast(cls, **overrides: Any) -> "MeasureOptions":
        """Short settings for tests and smoke runs (figures are noisy, never for decisions)."""
        values: dict[str, Any] = dict(warmup=5, min_iters=30, min_time_s=0.1, throughput_time_s=0.2,
                                      profile_repeats=10, accuracy_batch=250, relative_polls=4,
                                      relative_window=10)
        values.update(overrides)
        return cls(**values)


@dataclass
class EngineInfo:
    """What ran the model: engine, device, the precision it actually used, threads and streams."""

    backend: str
    device: str
    device_name: str
    engine_version: str
    #: The precision that ran: int8 for a quantized model, else the float precision the device used
    #: (fp16 asked on a CPU without fp16 support runs, and is recorded as, bf16 or fp32).
    precision: str
    #: The precision asked for: fp32, bf16, fp16, int8 or auto.
    requested_precision: str
    #: The compiled model's actual inference precision for float layers (INFERENCE_PRECISION_HINT).
    inference_precision: str
    #: Executed layers per runtime precision (from the execution graph), e.g. {"bf16": 26, "f32": 27}.
    runtime_precisions: dict[str, int]
    threads: int
    streams: int
    pinning: bool | None
    batch_size: int
