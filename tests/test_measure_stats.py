"""Latency statistics on synthetic timings, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.measure.stats import median_ci_ranks, quiet_median, summarize, time_calls


def _coverage(n: int, j: int, k: int) -> float:
    """P(j <= B <= k - 1) for B ~ Binomial(n, 1/2), by exact counting."""
    return sum(math.comb(n, i) for i in range(j, k)) / 2 ** n


def test_summary_of_known_values() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    shuffled = np.random.default_rng(1).permutation(values)
    stats = summarize(shuffled)
    assert stats.median == 50.5
    assert stats.mean == 50.5
    assert stats.min == 1 and stats.max == 100 and stats.count == 100
    # Linear interpolation between order statistics: rank 1 + 0.9 * 99 = 90.1 -> 90.1.
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.std == pytest.approx(math.sqrt(sum((v - 50.5) ** 2 for v in values) / 99))
    # The classic table value for n = 100: the 40th and 61st order statistics.
    assert (stats.ci95_low, stats.ci95_high) == (40.0, 61.0)


@pytest.mark.parametrize("n", [6, 7, 10, 25, 50, 101, 1000])
def test_median_ci_is_the_tightest_symmetric_95_percent_interval(n: int) -> None:
    j, k = median_ci_ranks(n)
    assert j + k == n + 1
    assert _coverage(n, j, k) >= 0.95
    assert _coverage(n, j + 1, k - 1) < 0.95  # one rank tighter would not cover


def test_tiny_samples_fall_back_to_the_range() -> None:
    assert median_ci_ranks(5) == (1, 5)
    stats = summarize([3.0, 1.0, 2.0])
    assert (stats.ci95_low, stats.median, stats.ci95_high) == (1.0, 2.0, 3.0)


def test_skewed_timings_keep_the_median_honest() -> None:
    rng = np.random.default_rng(0)
    times = np.concatenate([rng.normal(1.0, 0.01, 990), np.full(10, 50.0)])  # 1% huge outliers
    stats = summarize(times)
    assert abs(stats.median - 1.0) < 0.01
    assert stats.mean > 1.4  # the mean is dragged by the tail, the median is not
    assert stats.ci95_low <= stats.median <= stats.ci95_high
    assert stats.p99 >= 1.0 and stats.max == 50.0


def test_quiet_median_is_the_lowest_window_median() -> None:
    # Three windows of 4 in time order, medians 2.5, 10.5 and 6.5; the last two timings are a
    # partial window and are left out.
    times = [1, 2, 3, 4, 9, 10, 11, 12, 5, 6, 7, 8, 0.1, 0.1]
    assert quiet_median(times, window=4) == (2.5, 3)
    stats = summarize(times, window=4)
    assert (stats.quiet_median, stats.window, stats.windows) == (2.5, 4, 3)
    assert stats.median == float(np.median(times))


def test_quiet_median_ignores_a_burst_that_moves_the_median() -> None:
    rng = np.random.default_rng(2)
    quiet = rng.normal(1.0, 0.01, 400)
    # A neighbour's burst slows 60% of the run by 30%: the median of all moves, the quiet one not.
    times = np.concatenate([quiet[:200], rng.normal(1.3, 0.01, 600), quiet[200:]])
    stats = summarize(times, window=100)
    assert stats.median > 1.1
    assert abs(stats.quiet_median - 1.0) < 0.02 and stats.windows == 10


def test_quiet_median_of_a_short_run_is_the_median() -> None:
    times = np.arange(150, dtype=float)
    assert quiet_median(times, window=100) == (74.5, 1)
    assert summarize(times, window=100).quiet_median == summarize(times).median


def test_timing_loop_needs_both_count_and_time() -> None:
    calls = []
    by_count = time_calls(lambda: calls.append(1), warmup=3, min_iters=50, min_time_s=0.0)
    assert len(by_count) == 50 and len(calls) == 53  # warm-up calls are not counted
    by_time = time_calls(lambda: None, warmup=0, min_iters=1, min_time_s=0.05)
    assert len(by_time) > 1 and by_time.sum() >= 50.0  # milliseconds
