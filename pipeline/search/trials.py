"""The real trial function of a sweep: parameters → schedule overrides → ``run_trial`` → outcome."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from pipeline.flow import RunConfig
from pipeline.queue import ResultQueue
from pipeline.schedule import Schedule
from pipeline.settings import Settings
from pipeline.trial import Tracker, run_trial

from ..progress import StageLines
from .engine import TrialContext, TrialFunction, TrialOutcome
from .mapping import load_base_schedule, map_params


def run_config_for(base: RunConfig, params: dict[str, Any],
                   schedule: Schedule | None = None) -> RunConfig:
    """``base`` with the trial's parameters applied (schedule overrides, model, epochs, lr,
    precision, kd_*). A ``model`` other than the base's takes its own pretrained checkpoint
    (``checkpoint=None``: ``default_checkpoint(model, settings)``), not the base's; the
    reference network of ``Relative_Latency`` stays the base's."""
    mapped = map_params(params, schedule or load_base_schedule(base.schedule))
    settings = mapped.run_settings
    target = dataclasses.replace(base.target, precision=settings.get("precision", base.target.precision))
    # The other run settings (model, epochs, lr, kd_weight, kd_temperature) are RunConfig fields by name.
    fields = {k: v for k, v in settings.items() if k != "precision"}
    if fields.get("model", base.model) != base.model:
        fields["checkpoint"] = None
    # Every trial is timed against the unpruned base network, whatever ``model`` it prunes, so
    # the Relative_Latency of trials over several bases rank on one scale.
    return dataclasses.replace(base, overrides=mapped.overrides, target=target, params=mapped.params,
                               reference_model=base.reference_model or base.model, **fields)


def make_trial_function(base: RunConfig, settings: Settings, queue: ResultQueue, timeout: float,
                        tracker_factory: Callable[[], Tracker] | None = None,
                        stage_lines: bool = False) -> TrialFunction:
    """A trial function that prunes, retrains and exports through ``pipeline.flow`` and waits for
    the consumer's measurement on ``queue``; with ``stage_lines`` it prints a line to stderr as
    each stage of a trial ends (``progress.StageLines``)."""
    schedule = load_base_schedule(base.schedule)

    def run(context: TrialContext) -> TrialOutcome:
        config = run_config_for(base, context.params, schedule)
        tracker = tracker_factory() if tracker_factory else None
        gate, on_epoch, on_stage = context.gate, context.on_epoch, None
        if stage_lines:
            lines = StageLines(prefix=f"trial {context.number}: ", epochs=config.epochs)
            gate, on_epoch, on_stage = lines.gate(gate), lines.on_epoch(on_epoch), lines.stage
        done = run_trial(config, queue, settings, Path(context.run_dir), timeout, tracker=tracker,
                         gate=gate, on_epoch=on_epoch, on_stage=on_stage)
        status, reason = done.status, done.reason
        if done.timed_out:
            reason = f"no measurement within {timeout:.0f} s: is a consumer running?"
        # "benchmark" is the producer's wait for the consumer: counted once, as the consumer's time.
        compute_s = sum(v for k, v in done.produced.stage_seconds.items() if k != "benchmark")
        if done.result is not None and done.result.started_at > 0:
            compute_s += max(0.0, done.result.finished_at - done.result.started_at)
        return TrialOutcome(status, done.metrics(), reason, compute_s, str(context.run_dir))

    return run
