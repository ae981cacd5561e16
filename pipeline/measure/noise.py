"""Is a latency measurement noise? A rule on the measurement's own spread, not on the machine's.

On a busy machine the figures of one measurement contradict each other: ``Latency`` (the sum of
the layers' mean times while profiling) exceeded ``Total_Latency`` (the quiet median of whole
requests, which includes those layers), p90 was 4.5x the quiet median, while ``machine_slowdown``
read 1.00 every time (its reference is learned in the same busy process). The measurement itself
shows the disturbance, so the rule reads it there. A measurement is flagged when any of:

- ``p90 / quiet_median > TAIL_LIMIT`` (2.0): on a quiet machine p90 is within ~1.3x of the quiet
  median; a tenth of the requests twice as slow as the quiet ones means neighbours took turns;
- ``Latency > Total_Latency`` on OpenVINO: the layers' sum cannot exceed the request that runs
  them unless the profiled run was disturbed (ONNX Runtime's profiler slows its kernels, so its
  sum exceeds Total_Latency anyway, and the check is skipped there);
- ``relative_spread > SPREAD_LIMIT`` (0.1), when Relative_Latency was measured: the alternating
  windows disagree by more than a tenth.

``measure`` re-times a flagged measurement up to ``MeasureOptions.remeasure`` times, keeps the
steadiest (lowest p90 / quiet median), and records ``measurement_flag`` (None when steady) and
``measure_attempts``. The search never ranks on a flagged figure that was not timed again
(``unranked_figures``: e.g. from a consumer run with ``remeasure=0``); one still flagged after
re-timing is the steadiest there is, and ranks with its flag recorded: refusing it too would stall
a search on a machine that stays busy.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .stats import LatencyStats

TAIL_LIMIT = 2.0
SPREAD_LIMIT = 0.1
#: Result metrics that a flagged measurement makes untrustworthy (objectives ranked on them wait).
TIMING_METRICS = frozenset({"Latency", "Total_Latency", "Relative_Latency", "Throughput"})


def tail_ratio(latency: LatencyStats) -> float:
    """p90 over the quiet median: 1.0-1.3 on a quiet machine; the steadiness ``measure`` ranks by."""
    return latency.p90 / latency.quiet_median if latency.quiet_median > 0 else math.inf


def measurement_flag(latency: LatencyStats, layer_latency_ms: float | None = None,
                     backend: str = "openvino", relative_spread: float | None = None,
                     tail_limit: float = TAIL_LIMIT) -> str | None:
    """Why this measurement is noise (one line naming the figures), or None when it is steady."""
    reasons = []
    tail = tail_ratio(latency)
    if tail > tail_limit:
        reasons.append(f"p90 {latency.p90:.3f} ms is {tail:.1f}x the quiet median "
                       f"{latency.quiet_median:.3f} ms (limit {tail_limit:g}x)")
    if backend == "openvino" and layer_latency_ms is not None and layer_latency_ms > latency.quiet_median:
        reasons.append(f"Latency (sum of layers) {layer_latency_ms:.3f} ms exceeds Total_Latency "
                       f"{latency.quiet_median:.3f} ms")
    if relative_spread is not None and relative_spread > SPREAD_LIMIT:
        reasons.append(f"relative_spread {relative_spread:.2f} exceeds {SPREAD_LIMIT:g}")
    return "noisy: " + "; ".join(reasons) if reasons else None


def flag_cell(metrics: Mapping[str, Any]) -> str:
    """The flag column of a table: ``noisy``/``steady`` with the attempts, ``-`` without timing."""
    if "measure_attempts" not in metrics:
        return "-"
    word = "noisy" if metrics.get("measurement_flag") else "steady"
    attempts = int(metrics["measure_attempts"])
    return word if attempts == 1 else f"{word} ({attempts}x)"


def unranked_figures(metrics: Mapping[str, Any], names: list[str]) -> list[str]:
    """Those of ``names`` that a flagged measurement produced without timing it again: a search
    must not rank on them (empty for a steady or a re-timed measurement)."""
    if not metrics.get("measurement_flag") or int(metrics.get("measure_attempts", 1)) > 1:
        return []
    return [n for n in names if n in TIMING_METRICS and n in metrics]
