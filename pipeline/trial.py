"""One producer trial end to end: produce the model, queue it, wait for its result, record it.

The producer agent, ``edgeprune run``, baselines and sweeps all call ``run_trial``; the queue may
be a real Redis or the in-process one (``pipeline.queue.open_queue``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .messages import Result
from .queue.access import ResultQueue
from .status import TrialStatus

if TYPE_CHECKING:
    from .flow import EpochFn, GateFn, Produced, RunConfig, StageFn
    from .settings import Settings

log = logging.getLogger(__name__)

#: What each retraining epoch logs (validation Top1 and mean cross-entropy, step = the epoch, from 1).
#: Under ``wandb agent`` W&B's hyperband reads the sweep metric's history, so ``Top1``'s history
#: is these values alone: the deployed model's ``Top1`` goes to the run summary.
EPOCH_METRICS = ("Top1", "loss")


class Tracker(Protocol):
    """Where a trial reports its parameters and figures (W&B in sweeps; nothing by default)."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, Any]) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


class NullTracker:
    """A tracker that records nothing."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass


@dataclass
class RunOutcome:
    """What one run produced and what the consumer measured (None: nothing was queued, or the
    wait timed out; ``timed_out`` tells which). A sweep turns it into the engine's
    ``pipeline.search.engine.TrialOutcome``."""

    produced: "Produced"
    result: Result | None
    result_path: Path
    job_id: str = ""
    timed_out: bool = False

    @property
    def status(self) -> TrialStatus:
        """The producer's (ok, collapsed, gated, early_stopped), or failed when the measurement
        failed or did not come in time (``timed_out`` tells which)."""
        if self.timed_out or (self.result is not None and not self.result.ok):
            return TrialStatus.FAILED
        return TrialStatus(self.produced.status)

    @property
    def reason(self) -> str:
        """Why the status is not ok ('' when it is)."""
        if self.timed_out:
            return f"no result for job {self.job_id} in time: it stays queued"
        if self.result is not None and not self.result.ok:
            return self.result.error
        return self.produced.reason

    def metrics(self) -> dict[str, Any]:
        """Producer figures overlaid with the consumer's."""
        merged = dict(self.produced.metrics)
        if self.result is not None:
            merged.update(self.result.metrics)
        return merged


def run_trial(config: "RunConfig", queue: ResultQueue, settings: "Settings", out_dir: Path,
              timeout: float, tracker: Tracker | None = None, gate: "GateFn | None" = None,
              on_epoch: "EpochFn | None" = None, on_stage: "StageFn | None" = None) -> RunOutcome:
    """Prune/retrain/export ``config`` into ``out_dir``, measure it through ``queue``, write
    ``result.json`` and report to ``tracker``.

    A model that collapsed, was gated or stopped early is not queued unless the producer still
    exported it (``produced.onnx_path``). A wait past ``timeout`` seconds (counted from the
    submission, Redis blips retried within it) returns with ``timed_out``; the job stays queued
    and its result is still stored when it comes.
    """
    from .flow import job_for, produce, write_result

    tracker = tracker or NullTracker()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker.log_params(dict(config.params))
    epochs_logged: list[int] = []
    produced = produce(config, settings, out_dir, gate=gate, on_stage=on_stage,
                       on_epoch=_logging_epochs(tracker, on_epoch, epochs_logged))
    history_row = (lambda m: {k: v for k, v in m.items() if k not in EPOCH_METRICS}) if epochs_logged \
        else dict
    # Pre-retraining figures (Top1_before, MACs) are visible while the job waits for a consumer.
    tracker.log_metrics(history_row(produced.metrics))
    result: Result | None = None
    job_id, timed_out = "", False
    if produced.onnx_path is not None:
        start = time.perf_counter()
        # A Redis blip while submitting or waiting is retried within the same timeout.
        job = queue.submit(job_for(produced, config.target, config.eval_split), produced.onnx_path,
                           retry_s=timeout)
        job_id = job.job_id
        log.info("run %s: job %s queued, waiting up to %.0f s", produced.run_id, job_id, timeout)
        result = queue.wait_result(job_id, max(0.0, timeout - (time.perf_counter() - start)))
        timed_out = result is None
        if timed_out:
            log.warning("run %s: no result for job %s within %.0f s; it stays queued",
                        produced.run_id, job_id, timeout)
        produced.stage_seconds["benchmark"] = time.perf_counter() - start
        if on_stage is not None:
            on_stage("benchmark", produced.stage_seconds["benchmark"])
    path = write_result(out_dir, produced, result, pending_job=job_id if timed_out else "")
    outcome = RunOutcome(produced=produced, result=result, result_path=path, job_id=job_id,
                           timed_out=timed_out)
    metrics = outcome.metrics()
    tracker.log_metrics(history_row(metrics))
    # str(): W&B would show a TrialStatus by its enum name ("OK").
    tracker.finish({**metrics, "status": str(outcome.status), "reason": outcome.reason, "job_id": job_id})
    return outcome


def _logging_epochs(tracker: Tracker, on_epoch: EpochFn | None, logged: list[int]) -> EpochFn:
    """``on_epoch`` that first logs the epoch's ``EPOCH_METRICS`` to ``tracker`` (appending the
    epoch, from 1, to ``logged``), then asks ``on_epoch`` (early stopping) whether to go on."""
    def logging_on_epoch(epoch: int, accuracy: Any) -> bool:
        logged.append(epoch + 1)
        tracker.log_epoch(epoch + 1, {"Top1": float(accuracy.top1), "loss": float(accuracy.loss)})
        return True if on_epoch is None else on_epoch(epoch, accuracy)

    return logging_on_epoch
