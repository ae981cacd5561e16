"""The producer agent: one trial through a Redis queue, or measured in this process without Redis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.flow import EpochFn, GateFn, RunConfig, StageFn, measure_work
from pipeline.queue import QueueConfig, open_queue
from pipeline.settings import Settings
from pipeline.trial import RunOutcome, Tracker, run_trial

if TYPE_CHECKING:
    from pipeline.measure import MeasureOptions


def run_producer(config: RunConfig, settings: Settings, out_dir: Path, timeout: float,
                 redis_url: str | None = None, prefix: str = "edgeprune",
                 queue_config: QueueConfig | None = None, tracker: Tracker | None = None,
                 measure_options: MeasureOptions | None = None, on_stage: StageFn | None = None,
                 on_epoch: EpochFn | None = None, gate: GateFn | None = None) -> RunOutcome:
    """Run one trial; its job goes to the Redis at ``redis_url``, or is measured in this
    process (with ``measure_options``) as it is submitted when ``redis_url`` is None. ``on_stage``,
    ``on_epoch`` and ``gate`` are ``pipeline.flow.produce``'s (e.g. ``pipeline.progress.StageLines``)."""
    work = measure_work(settings, measure_options)
    with open_queue(redis_url, work, config.target, queue_config, prefix) as queue:
        return run_trial(config, queue, settings, out_dir, timeout, tracker=tracker, gate=gate,
                         on_stage=on_stage, on_epoch=on_epoch)
