"""The producer's ``--loop`` mode: pull trials from a shared study until its budget is spent.

``edgeprune sweep`` runs this in each worker process, and ``edgeprune producer --loop`` runs it on
any machine that can reach the study's storage (a PostgreSQL URL) and the queue's Redis; every
worker asks the same Optuna study for its next parameters, so they never repeat each other's work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline.flow import RunConfig
from pipeline.measure.options import MeasureOptions
from pipeline.messages import TrialRecord
from pipeline.queue import JobQueue, QueueConfig, connect, embedded_queue, measure_work
from pipeline.search.config import load_sweep
from pipeline.search.engine import SweepRunner, open_study, study_name_of
from pipeline.search.gate import queue_measure
from pipeline.search.mapping import check_mapping
from pipeline.search.progress import ProgressTable
from pipeline.search.storage import open_storage
from pipeline.search.tracking import make_tracker
from pipeline.search.trials import make_trial_function
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LoopSpec:
    """Everything one worker needs; plain data, so it crosses a process boundary."""

    sweep: str
    base: RunConfig
    settings: Settings
    out_dir: str
    n_trials: int
    storage: str | None = None
    study_name: str | None = None
    redis_url: str | None = None
    queue_prefix: str = "edgeprune"
    queue_config: QueueConfig | None = None
    timeout: float = 3600.0
    seed: int | None = None
    tracker: str = "none"
    progress: bool = True
    #: How consumers in this process measure (None: MeasureOptions defaults).
    measure_options: MeasureOptions | None = None


@contextlib.contextmanager
def open_queue(spec: LoopSpec) -> Iterator[JobQueue]:
    """The Redis queue when a URL is given (consumers elsewhere), else an embedded one."""
    if spec.redis_url:
        yield JobQueue(connect(spec.redis_url), spec.queue_prefix, spec.queue_config)
        return
    with embedded_queue(measure_work(spec.settings, spec.measure_options), spec.base.target, spec.queue_config,
                        spec.queue_prefix) as queue:
        yield queue


def run_loop(spec: LoopSpec) -> list[TrialRecord]:
    """Run trials of the spec's study until it holds ``n_trials``; returns this worker's records."""
    config = load_sweep(Path(spec.sweep))
    check_mapping(config.parameters, spec.base.schedule)
    storage = open_storage(spec.storage, Path(spec.out_dir))
    study = open_study(config, storage, spec.study_name or study_name_of(config), spec.seed)
    with open_queue(spec) as queue:
        tracker = (lambda: make_tracker(spec.tracker, project=config.project or None,
                                        entity=config.entity or None, group=study.study_name,
                                        dir=spec.out_dir)) if spec.tracker != "none" else None
        runner = SweepRunner(
            config, study, make_trial_function(spec.base, spec.settings, queue, spec.timeout, tracker),
            Path(spec.out_dir), spec.n_trials, measure=queue_measure(queue, spec.timeout),
            target=spec.base.target, on_record=ProgressTable(config) if spec.progress else None)
        recovered = runner.recover_interrupted()
        if recovered:
            log.warning("%d interrupted trial(s) of study %s will run again", recovered,
                        study.study_name)
        return runner.run()


def worker_spec(spec: LoopSpec, index: int) -> LoopSpec:
    """The spec of worker ``index``: its own sampler seed, so random draws differ per worker."""
    seed = None if spec.seed is None else spec.seed + index
    return dataclasses.replace(spec, seed=seed)
