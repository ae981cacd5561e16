"""Is the machine slowed down right now? A fixed reference kernel timed against its usual quiet time.

On a shared VM the host sometimes takes part of this guest's CPU away for tens of seconds: on a
2-core AMD EPYC VM, every kernel (the model's and any other) then runs 1.5-2x slower, for 20-40 s
at a time. The quiet median (stats.py) sees through bursts shorter than a run, not through these.
There a small fixed workload on all cores (float32 matrix products) slowed by the same factor: over
90 s its time tracked the model's median with a correlation of 0.91-0.97
(benchmarks/interference.py).
Its time over its usual quiet time in this process is therefore the machine's current *slowdown*, and
a measurement can wait for the machine to be itself again before it starts.

It times many short calls and keeps their median, so it sees the machine itself running slower,
not other processes of this machine taking turns on the cores (a call that is preempted is one
slow sample among thirty; the quiet median of the model's requests skips those turns likewise).

The reference time is the process's own: a low percentile (``BASELINE_PERCENTILE``) of the last
timings, not their minimum. On a 2-core Intel Xeon VM the kernel's timings scatter by +/-20% on a
quiet machine, and loading OpenVINO shifts them up by a third for the rest of the process: against
the single fastest timing ever seen, every later poll read 1.4-1.6x and each measurement waited
its whole allowance. A process that starts inside a slow period takes that period for normal until
it sees quiet ones.

How well the kernel tracks the model depends on the machine: correlation 0.91-0.97 on an AMD EPYC
VM, but -0.05 to 0.68 on the Intel Xeon VM, whose slow periods slowed OpenVINO, not numpy.
Where it does not track, ``Relative_Latency`` (relative.py: the model timed in alternation with a
reference model on the same engine) is the figure to rank models by.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

#: Slowdown above which the machine counts as disturbed (the model's own run-to-run spread on a
#: quiet machine is a few percent; the slow periods we see are 1.3x and more).
DISTURBED = 1.15
#: The kernel's reference time: this percentile of its last ``HISTORY`` timings (robust to the rare
#: timing far below the usual quiet level, which would make every later poll look slow).
BASELINE_PERCENTILE = 10
HISTORY = 200


class ReferenceKernel:
    """Times a fixed workload; ``slowdown()`` is its time now over its usual quiet time."""

    def __init__(self, size: int = 128, repeats: int = 30):
        rng = np.random.default_rng(0)
        self.matrix = rng.standard_normal((size, size), dtype=np.float32)
        self.repeats = repeats
        self.history: deque[float] = deque(maxlen=HISTORY)

    @property
    def best_ms(self) -> float:
        """The quiet reference time: a low percentile of the recent timings (inf before any)."""
        if not self.history:
            return float("inf")
        return float(np.percentile(self.history, BASELINE_PERCENTILE))

    def time_ms(self) -> float:
        """Median milliseconds of one workload call over ``repeats`` calls (about 10 ms in all)."""
        times = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            for _ in range(4):
                self.matrix @ self.matrix
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3

    def slowdown(self) -> float:
        """This moment's time over the quiet reference time (1.0 on a quiet machine, never below)."""
        now = self.time_ms()
        self.history.append(now)
        return max(1.0, now / self.best_ms)


_PROCESS_KERNEL: ReferenceKernel | None = None


def process_kernel() -> ReferenceKernel:
    """The process-wide reference kernel, so that its reference time is learned over measurements."""
    global _PROCESS_KERNEL
    if _PROCESS_KERNEL is None:
        _PROCESS_KERNEL = ReferenceKernel()
        _PROCESS_KERNEL.slowdown()  # the first timing starts the BLAS threads and warms caches
    return _PROCESS_KERNEL


def wait_until_quiet(max_wait_s: float, limit: float = DISTURBED, poll_s: float = 1.0,
                     kernel: ReferenceKernel | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> tuple[float, float]:
    """Poll the reference kernel until its slowdown is at most ``limit`` or ``max_wait_s`` passed.

    Returns ``(slowdown, seconds waited)``: the slowdown when timing may start (above ``limit``
    when the wait ran out; the caller records it next to the figures it then takes).
    """
    kernel = kernel or process_kernel()
    slowdown = kernel.slowdown()
    # Counted from the first reading: the probe itself is not a wait (0.1 s on a loaded machine).
    started = time.monotonic()
    if slowdown > limit and max_wait_s > 0:
        log.info("machine is %.2fx slower than usual; waiting up to %.0f s before timing",
                 slowdown, max_wait_s)
    while slowdown > limit and time.monotonic() - started < max_wait_s:
        sleep(poll_s)
        slowdown = kernel.slowdown()
    waited = time.monotonic() - started
    if slowdown > limit and max_wait_s > 0:
        log.warning("machine still %.2fx slower than usual after %.0f s; timing anyway (the "
                    "result records machine_slowdown)", slowdown, waited)
    return slowdown, waited
