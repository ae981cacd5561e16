"""What a producer believes: a stored result is hostile until it is checked here.

A result is accepted only if it parses, is signed when the queue signs (``signing``), names the
job id and run id the producer submitted, and its figures have the right types within their
ranges. Anything else raises ``BadResult``; the producer warns once and goes on waiting for a
valid result until its timeout, so a forged entry can delay a run but never end it with figures.
"""

from __future__ import annotations

from typing import Any

from ..errors import QueueError
from ..messages import Result, parse_checked
from .entries import number_problem, shown
from .signing import signed_object

#: Largest result message read (metrics with a per-layer profile are tens of KB).
MAX_RESULT_BYTES = 4 * 1024 * 1024
#: Figures that must be non-negative numbers when present and not null (null: not measured, e.g.
#: ``Latency`` without a profile, ``Throughput`` without a throughput run).
NON_NEGATIVE = ("Latency", "Total_Latency", "Throughput", "Top1", "Top5", "Top1_torch", "Top5_torch",
                "Relative_Latency", "onnx_bytes", "ir_bytes", "params", "macs", "eval_count",
                "measure_seconds", "onnx_nodes")
#: Figures that are percentages.
PERCENT = ("Top1", "Top5", "Top1_torch", "Top5_torch")


class BadResult(QueueError):
    """A stored result the producer must not believe."""


def check_result(raw: bytes | str, job_id: str, run_id: str | None, secret: bytes | None) -> Result:
    """The result in ``raw`` for job ``job_id`` of run ``run_id`` (None: any run), fully checked,
    or ``BadResult`` naming what is wrong."""
    if len(raw) > MAX_RESULT_BYTES:
        raise BadResult(f"the result is {len(raw)} bytes, over {MAX_RESULT_BYTES}")
    signed_object(raw, "result", secret, BadResult, "the result is {}")  # before the typed parse
    try:
        result = parse_checked(Result, raw, strict=True)
    except ValueError as exc:
        raise BadResult(f"the result is not a valid result message ({str(exc).splitlines()[0][:200]})") from None
    if result.job_id != job_id:
        raise BadResult(f"the result names job {shown(result.job_id)}, not {job_id}")
    if run_id is not None and result.run_id != run_id:
        raise BadResult(f"the result names run {shown(result.run_id)}, not the submitted run {shown(run_id)}")
    if not result.ok and result.metrics:
        raise BadResult("a failed result carries figures: failures record none")
    check_metrics(result.metrics)
    return result


def check_metrics(metrics: dict[str, Any]) -> None:
    """Raise ``BadResult`` unless every number is finite and bounded, the named figures are null
    or non-negative numbers, and percentages are at most 100."""
    problem = number_problem(metrics, "metrics")
    if problem:
        raise BadResult(problem)
    for name in NON_NEGATIVE:
        if metrics.get(name) is None:
            continue
        value = metrics[name]
        if not _is_number(value) or value < 0:
            raise BadResult(f"metric {name} is {shown(value)}: it must be a non-negative number")
        if name in PERCENT and value > 100:
            raise BadResult(f"metric {name} is {shown(value)}: a percentage is at most 100")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
