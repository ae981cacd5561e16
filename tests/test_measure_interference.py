"""The reference kernel that tells a slow period of a shared machine, and the wait before timing."""

from __future__ import annotations

import math

from pipeline.measure.interference import DISTURBED, ReferenceKernel, wait_until_quiet


class ScriptedKernel(ReferenceKernel):
    """The real slowdown bookkeeping over scripted timings, to drive the wait through a slow period."""

    def __init__(self, times_ms: list[float]):
        super().__init__(size=4, repeats=1)
        self.times_ms = list(times_ms)
        self.calls = 0

    def time_ms(self) -> float:
        self.calls += 1
        return self.times_ms.pop(0) if len(self.times_ms) > 1 else self.times_ms[0]


def test_real_kernel_slowdown_is_relative_to_its_quiet_time() -> None:
    kernel = ReferenceKernel()
    assert kernel.slowdown() == 1.0 and math.isfinite(kernel.best_ms) and kernel.best_ms > 0
    for _ in range(5):
        assert kernel.slowdown() >= 1.0
    assert len(kernel.history) == 6 and kernel.best_ms <= max(kernel.history)


def test_one_unusually_fast_timing_does_not_make_every_later_one_slow() -> None:
    # A quiet machine at 1.0 ms with its usual scatter, and one timing far below it (on one VM the
    # kernel ran a third faster before OpenVINO was loaded than ever after).
    quiet = [1.0, 1.05, 0.98, 1.02, 1.0, 0.97, 1.03, 1.01, 0.99, 1.04] * 2
    kernel = ScriptedKernel([0.6, *quiet, 1.02])
    for _ in range(1 + len(quiet)):
        kernel.slowdown()
    assert kernel.slowdown() < DISTURBED  # against the minimum (0.6 ms) it would read 1.7x


def test_wait_returns_once_the_slow_period_ends() -> None:
    # best 1.0 ms, then a slow period at 1.6x for three polls, then back to 1.02x.
    kernel = ScriptedKernel([1.0, 1.6, 1.6, 1.6, 1.02])
    kernel.slowdown()
    sleeps: list[float] = []
    slowdown, _ = wait_until_quiet(60.0, limit=1.15, poll_s=0.5, kernel=kernel, sleep=sleeps.append)
    assert slowdown < DISTURBED
    assert sleeps == [0.5, 0.5, 0.5] and kernel.calls == 5


def test_wait_gives_up_after_max_wait_and_reports_the_slowdown() -> None:
    kernel = ScriptedKernel([1.0, 2.0])
    kernel.slowdown()
    slowdown, waited = wait_until_quiet(0.05, limit=1.15, poll_s=0.01, kernel=kernel)
    assert slowdown > DISTURBED and waited >= 0.05


def test_no_wait_asked_times_at_once() -> None:
    kernel = ScriptedKernel([1.0, 2.0])
    kernel.slowdown()
    sleeps: list[float] = []
    slowdown, waited = wait_until_quiet(0.0, kernel=kernel, sleep=sleeps.append)
    assert slowdown > DISTURBED and sleeps == [] and waited < 1.0
