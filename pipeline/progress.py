"""What a person watching a run sees: a line as each stage ends, metrics rounded for reading.

``edgeprune run``, the producer agent and every sweep trial print the same lines (to stderr, so
that stdout stays the table or the JSON); ``pipeline.search.progress`` builds the sweep's table on
the same formatting. Kept apart from ``pipeline.search`` so that a single run does not import the
search engine.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, TextIO

#: What each of ``pipeline.flow``'s stages is called on screen.
STAGE_WORDS = {
    "schedule": "schedule checked", "data": "data loaded", "model": "model loaded",
    "prune": "pruned", "evaluate_pruned": "pruned model evaluated",
    "recalibrate_bn": "BatchNorm re-estimated", "gate": "latency gate", "teacher": "teacher ready",
    "retrain": "retrained", "evaluate": "evaluated", "export": "exported", "benchmark": "measured",
    "reference": "unpruned reference ready", "retrain_estimate": "retraining time estimated",
}

EpochCallback = Callable[[int, Any], bool]


def format_metric(name: str, value: Any) -> str:
    """A metric rounded for a person: ms to 3 significant digits, percent to 0.1, ratios to 0.001."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-" if value is None else str(value)
    if name.startswith(("Top1", "Top5")):
        return f"{value:.1f}%"
    if name in ("Latency", "Total_Latency") or name.endswith("_ms"):
        return f"{value:.3g} ms"
    if name == "Relative_Latency":
        return f"{value:.3f}"
    if name == "Throughput":
        return f"{value:.0f}/s"
    return f"{value:.4g}" if isinstance(value, float) else f"{value:,}"


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StageLines:
    """Prints a line as each stage of a trial ends (``produce``'s ``on_stage``) and after each
    retraining epoch (wrap the trial's ``on_epoch`` with :meth:`on_epoch`)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "  ", epochs: int = 0) -> None:
        self.stream = stream
        self.prefix = prefix
        self.epochs = epochs

    def stage(self, name: str, seconds: float) -> None:
        """``on_stage`` for ``pipeline.flow.produce`` / ``pipeline.trial.run_trial``."""
        self.line(f"{STAGE_WORDS.get(name, name):<24} {seconds:7.2f} s")

    def on_epoch(self, inner: EpochCallback | None = None) -> EpochCallback:
        """An ``on_epoch`` that prints the epoch's validation Top1, then asks ``inner`` (the
        early-stopping rule) whether to go on."""
        def on_epoch(epoch: int, accuracy: Any) -> bool:
            top1 = float(getattr(accuracy, "top1", accuracy))
            of = f"/{self.epochs}" if self.epochs else ""
            self.line(f"retraining epoch {epoch + 1}{of}: val Top1 {top1:.2f}%")
            return True if inner is None else inner(epoch, accuracy)

        return on_epoch

    def gate(self, inner: Callable[..., str | None] | None) -> Callable[..., str | None] | None:
        """The latency gate, saying what it decided (None stays None: no gate)."""
        if inner is None:
            return None

        def gate(*args: Any, **kwargs: Any) -> str | None:
            verdict = inner(*args, **kwargs)
            self.line(f"gated: {verdict}" if verdict else "latency gate passed: retraining")
            return verdict

        return gate

    def line(self, text: str) -> None:
        print(f"{self.prefix}{text}", file=self.stream or sys.stderr, flush=True)


def announce(text: str, stream: TextIO | None = None, prefix: str = "  ") -> None:
    """One line (stderr by default) saying what is about to take a while, and why."""
    print(f"{prefix}{text}", file=stream or sys.stderr, flush=True)


class ItemLines:
    """A line as each item of a long loop ends: ``<what> 3/25: <item> <detail> (1 min 05 s)``,
    the time counted from the object's creation. For loops whose items each take seconds, where a
    bar that vanishes off a terminal would leave a log silent."""

    def __init__(self, what: str, total: int, stream: TextIO | None = None, prefix: str = "  ") -> None:
        self.what = what
        self.total = total
        self.stream = stream
        self.prefix = prefix
        self.done = 0
        self.started = time.perf_counter()

    def item(self, name: str, detail: str = "") -> None:
        """Count ``name`` as done and print its line."""
        self.done += 1
        elapsed = format_duration(time.perf_counter() - self.started)
        text = f"{self.what} {self.done}/{self.total}: {name}{' ' + detail if detail else ''} ({elapsed})"
        announce(text, self.stream, self.prefix)
