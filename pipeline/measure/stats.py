"""Latency statistics: a timing loop that stops on count AND time, and distribution-free summaries.

Timings of an inference engine are skewed (a long right tail of scheduler hiccups), so the median
is the central figure and its confidence interval comes from order statistics (binomial method),
which needs no assumption about the distribution.

On a shared machine the median of a whole run still moves with the neighbours: bursts of their work
last from a fraction of a second to seconds and slow every request they cover, so the same model
timed twice a minute apart gave medians 30% apart on our 2-core VM. The headline figure is
therefore the *quiet median*: the run is cut into windows of consecutive requests, and the lowest
window median is kept, i.e. the model's median latency while nothing else disturbed it. Five runs
of one model agree within a few percent on it (benchmarks/bench_repeatability.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class LatencyStats:
    """Summary of per-inference times in milliseconds."""

    median: float
    mean: float
    std: float
    p90: float
    p99: float
    min: float
    max: float
    count: int
    #: 95% confidence interval of the median (order statistics; min/max when count < 6).
    ci95_low: float
    ci95_high: float
    #: Lowest median of ``window`` consecutive timings (the median when there are fewer than two
    #: windows): the headline ``Total_Latency``.
    quiet_median: float
    #: Timings per window and the number of whole windows the quiet median chose from.
    window: int
    windows: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """1-based ranks (j, k) with P(x_(j) <= true median < x_(k)) >= ``confidence``.

    The number of samples below the true median is Binomial(n, 1/2); the interval is the
    symmetric pair of order statistics with the largest j whose tail stays within alpha/2.
    Below 6 samples no pair reaches 95%, and the range (1, n) is returned.
    """
    if n < 1:
        raise ValueError("median_ci_ranks needs at least one sample")
    # scipy.special's binomial CDF: importing scipy.stats for it would cost every command about
    # half a second of start-up (0.77 s against 0.27 s on the 2-core VM).
    from scipy.special import bdtr

    alpha = 1.0 - confidence
    cdf = bdtr(np.arange(n + 1), n, 0.5)
    # Largest m with P(B <= m) <= alpha/2; then j = m + 1 and k = n + 1 - j.
    m = int(np.searchsorted(cdf, alpha / 2, side="right")) - 1
    j = max(m + 1, 1)
    return j, n + 1 - j


#: Timings per window of the quiet median: about a tenth of a second of a small CNN, short enough
#: to fit between bursts of neighbours' work, long enough for a stable median of its own.
QUIET_WINDOW = 100


def quiet_median(times_ms: np.ndarray | list[float], window: int = QUIET_WINDOW) -> tuple[float, int]:
    """Lowest median over consecutive windows of ``window`` timings (in the order taken), and the
    number of windows; with fewer than two whole windows, the median of all and 1."""
    ordered = np.asarray(times_ms, dtype=np.float64)
    count = ordered.size // window if window > 0 else 0
    if count < 2:
        return float(np.median(ordered)), 1
    blocks = ordered[:count * window].reshape(count, window)
    return float(np.median(blocks, axis=1).min()), count


def summarize(times_ms: np.ndarray | list[float], window: int = QUIET_WINDOW) -> LatencyStats:
    """Median, mean, std (sample, ddof=1), p90/p99 (linear interpolation), min, max, median CI, and
    the quiet median of ``window``-long runs of consecutive timings (``times_ms`` in time order)."""
    ordered = np.asarray(times_ms, dtype=np.float64)
    if ordered.size == 0:
        raise ValueError("summarize needs at least one timing")
    quiet, windows = quiet_median(ordered, window)
    values = np.sort(ordered)
    j, k = median_ci_ranks(values.size)
    return LatencyStats(
        median=float(np.median(values)),
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        p90=float(np.percentile(values, 90)),
        p99=float(np.percentile(values, 99)),
        min=float(values[0]),
        max=float(values[-1]),
        count=int(values.size),
        ci95_low=float(values[j - 1]),
        ci95_high=float(values[k - 1]),
        quiet_median=quiet,
        window=window,
        windows=windows,
    )


#: Uncounted calls before each short window of Relative_Latency: the other model just ran, so the
#: caches hold its weights.
WINDOW_WARMUP = 3


def timed_run(call: Callable[[], object], options: Any, requests: int | None = None) -> np.ndarray:
    """Milliseconds per ``call()``: the full timed run of ``options`` (MeasureOptions), or, given
    ``requests``, one short window of that many calls after ``WINDOW_WARMUP`` uncounted ones."""
    if requests is None:
        return time_calls(call, options.warmup, options.min_iters, options.min_time_s)
    return time_calls(call, WINDOW_WARMUP, requests, 0.0)


def time_calls(call: Callable[[], object], warmup: int, min_iters: int, min_time_s: float,
               max_iters: int = 1_000_000) -> np.ndarray:
    """Milliseconds per ``call()``: ``warmup`` uncounted calls, then until BOTH ``min_iters`` calls
    and ``min_time_s`` seconds of timed calls are reached (or ``max_iters``)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    clock = time.perf_counter
    spent = 0.0
    while (len(times) < min_iters or spent < min_time_s) and len(times) < max_iters:
        start = clock()
        call()
        elapsed = clock() - start
        times.append(elapsed * 1e3)
        spent += elapsed
    return np.asarray(times)
