"""Sweep orchestration: pull trials from a shared study until its budget is spent.

``edgeprune sweep`` calls ``run_sweep``, which creates the study and runs ``run_loop`` in this
process or in each worker process (``run_workers`` starts them); ``edgeprune producer --loop``
runs ``run_loop`` on any machine that can reach the study's storage (a PostgreSQL URL) and the
queue's Redis; every worker asks the same Optuna study for its next parameters, so they never
repeat each other's work.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.flow import RunConfig, measure_work
from pipeline.measure.options import MeasureOptions
from pipeline.messages import TrialRecord
from pipeline.queue import QueueConfig, ResultQueue, open_queue
from pipeline.settings import Settings
from pipeline.status import TrialStatus

from .config import SweepConfig, load_sweep
from .engine import SweepRunner, open_study, study_name_of
from .fidelity import MultiFidelityRunner, make_rapid_trial_function, rapid_config
from .gate import queue_measure
from .mapping import check_mapping
from .predictor import study_latency_models, trial_precisions
from .progress import ProgressTable
from .references import measure_references
from .storage import heartbeat_interval, load_trials, open_storage
from .tracking import make_tracker
from .trials import make_trial_function

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
    #: Latency model files, one per precision the trials run at, stored in the study on first
    #: open (empty: the study's stored ones, if any).
    latency_models: tuple[str, ...] = ()
    #: Measure the unpruned model (and the hand-picked schedule) once per target, stored in the
    #: study for reports (``pipeline.search.references``); off with ``--no-baselines``.
    baselines: bool = True
    #: Print the table of finished trials from this process (with ``progress``); several workers
    #: leave it to the parent, which prints one table for all of them (``run_workers``).
    table: bool = True


def run_sweep(spec: LoopSpec, workers: int = 1) -> list[TrialRecord]:
    """Run the spec's sweep with ``workers`` processes (1: in this one) until its study holds
    ``n_trials``; returns every trial the study holds, this run's and earlier ones.

    The study is created here, once, before any worker starts, so the workers do not race to
    create it; ``spec.latency_models`` are stored in it here too, and every worker reads them
    from the study.
    """
    config = load_sweep(Path(spec.sweep))
    name = spec.study_name or study_name_of(config)
    study = open_study(config, open_storage(spec.storage, Path(spec.out_dir)), name, spec.seed)
    _latency_models(spec, config, study)
    spec = dataclasses.replace(spec, study_name=name, latency_models=())
    if workers == 1:
        run_loop(spec)
    else:
        run_workers(spec, workers)
    return load_trials(spec.storage or spec.out_dir, name)


def run_loop(spec: LoopSpec) -> list[TrialRecord]:
    """Run trials of the spec's study until it holds ``n_trials``; returns this worker's records."""
    config = load_sweep(Path(spec.sweep))
    check_mapping(config.parameters, spec.base.schedule, spec.base.shortcut)
    storage = open_storage(spec.storage, Path(spec.out_dir))
    study = open_study(config, storage, spec.study_name or study_name_of(config), spec.seed)
    latency_models = _latency_models(spec, config, study)
    with open_queue(spec.redis_url, measure_work(spec.settings, spec.measure_options), spec.base.target,
                    spec.queue_config, spec.queue_prefix) as queue:
        tracker = (lambda: make_tracker(spec.tracker, project=config.project or None,
                                        entity=config.entity or None, group=study.study_name,
                                        dir=spec.out_dir)) if spec.tracker != "none" else None
        trial_fn = make_trial_function(spec.base, spec.settings, queue, spec.timeout, tracker,
                                       stage_lines=spec.progress)
        if config.fidelity is not None:
            return _run_fidelity(spec, config, study, trial_fn, latency_models, heartbeat_interval(storage),
                                 queue)
        runner = SweepRunner(
            config, study, trial_fn,
            Path(spec.out_dir), spec.n_trials,
            measure=queue_measure(queue, spec.timeout, reference_model=spec.base.model,
                                  reference_shortcut=spec.base.shortcut),
            target=spec.base.target, on_record=_table(spec, config, study.study_name),
            heartbeat_s=heartbeat_interval(storage), latency_models=latency_models)
        # A database study recovers dead workers' trials by heartbeat; a journal (one machine) by pid.
        recovered = 0 if runner.heartbeat_s else runner.recover_interrupted()
        if recovered:
            log.warning("%d interrupted trial(s) of study %s will run again", recovered,
                        study.study_name)
        _references(spec, study, queue, runner.budget_left())
        return runner.run()


def _table(spec: LoopSpec, config: SweepConfig, study_name: str) -> ProgressTable | None:
    """The progress table of this process, its best so far counting the study's earlier trials
    (a resumed sweep), or None when another process prints it or progress is off."""
    if not (spec.progress and spec.table):
        return None
    return ProgressTable(config, earlier=load_trials(spec.storage or spec.out_dir, study_name))


def _latency_models(spec: LoopSpec, config: SweepConfig, study: Any) -> Any:
    """The study's latency models (``spec.latency_models`` stored on first use), checked against
    the precisions the sweep's trials run at; a multi-fidelity sweep must price each of them."""
    return study_latency_models(study, [Path(p) for p in spec.latency_models], spec.base.target,
                                spec.base.model, trial_precisions(config, spec.base.target),
                                require_each=config.fidelity is not None)


def _references(spec: LoopSpec, study: Any, queue: ResultQueue, budget_left: bool) -> None:
    """The sweep's reference points, before its first trial (a study already full, or already
    holding them, measures nothing)."""
    if spec.baselines and budget_left:
        measure_references(study, spec.base, spec.settings, queue, spec.timeout, Path(spec.out_dir),
                           stage_lines=spec.progress)


def _run_fidelity(spec: LoopSpec, config: SweepConfig, study: Any, trial_fn: Any, latency_models: Any,
                  heartbeat_s: float | None, queue: ResultQueue) -> list[TrialRecord]:
    """A multi-fidelity sweep: rapid trials on the latency models, then the promoted rungs."""
    if latency_models is None:
        raise UserError(f"{spec.sweep}: fidelity ranks rapid trials on predicted latency: pass "
                        "--latency-model FILE (fitted for this target and model)")
    assert config.fidelity is not None
    runner = MultiFidelityRunner(
        config, study, make_rapid_trial_function(spec.base, spec.settings, latency_models, config.fidelity.rapid),
        trial_fn, Path(spec.out_dir), spec.n_trials, seed=spec.seed,
        on_record=_table(spec, rapid_config(config), study.study_name), heartbeat_s=heartbeat_s)
    if not heartbeat_s:
        runner.runner.recover_interrupted()
    _references(spec, study, queue, runner.runner.budget_left())
    return runner.run()


def worker_spec(spec: LoopSpec, index: int) -> LoopSpec:
    """The spec of worker ``index``: its own sampler seed, so random draws differ per worker;
    only worker 0 measures the references, so workers started together do not all measure them."""
    seed = None if spec.seed is None else spec.seed + index
    return dataclasses.replace(spec, seed=seed, baselines=spec.baselines and index == 0, table=False)


#: Seconds stopped workers get to record their running trial as interrupted before being killed.
STOP_GRACE_S = 30.0


def run_workers(spec: LoopSpec, workers: int) -> None:
    """Run ``workers`` processes of ``run_loop`` on the spec's study and wait for them.

    SIGTERM or SIGINT to this process stops the workers too (each records its running trial as
    interrupted, to be rerun on resume) before the KeyboardInterrupt goes on. A worker's user
    error is raised here once all have ended.
    """
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    processes = [context.Process(target=_worker_main, args=(worker_spec(spec, i), errors),
                                 name=f"sweep-worker-{i}") for i in range(workers)]
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for process in processes:
            process.start()
        _follow(spec, processes)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(processes)
    if not errors.empty():
        raise errors.get()
    crashed = [f"{p.name} (exit {p.exitcode})" for p in processes if p.exitcode]
    if crashed:
        raise RuntimeError(f"sweep worker(s) {', '.join(crashed)} failed; see their output above")


#: Seconds between the parent's looks at the study for trials its workers finished.
FOLLOW_S = 2.0


def _follow(spec: LoopSpec, processes: list[Any]) -> None:
    """Wait for the workers; with progress on, print ONE table of the trials they finish (in the
    order they finish), read from the study, instead of one table per worker."""
    table, printed = None, set()
    if spec.progress:
        config = load_sweep(Path(spec.sweep))
        table = ProgressTable(rapid_config(config) if config.fidelity is not None else config,
                              earlier=load_trials(spec.storage or spec.out_dir, spec.study_name))
        printed = {r.number for r in table.records}
    while True:
        alive = [p for p in processes if p.is_alive()]
        if alive:
            alive[0].join(FOLLOW_S)
        if table is not None:
            printed |= _print_new(spec, table, printed)
        if not alive:
            return


def _print_new(spec: LoopSpec, table: ProgressTable, printed: set[int]) -> set[int]:
    """Print the finished trials not printed yet; returns their numbers."""
    fresh = [r for r in load_trials(spec.storage or spec.out_dir, spec.study_name)
             if r.status != TrialStatus.RUNNING and r.number not in printed]
    for record in sorted(fresh, key=lambda r: r.finished_at):
        table(record)
    return {r.number for r in fresh}


def _worker_main(spec: LoopSpec, errors: Any) -> None:
    from optuna import logging as optuna_logging

    # Optuna's "[I ...] Trial 3 finished" lines would interleave with the parent's table.
    optuna_logging.set_verbosity(optuna_logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_loop(spec)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as exc:
        errors.put(exc)
        sys.exit(2)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: the running trial is recorded as interrupted on the way out."""
    raise KeyboardInterrupt(f"signal {signum}")


#: Seconds between SIGTERMs to a worker that is still running: a library may swallow the
#: KeyboardInterrupt (torch-pruning's graph tracing has a bare ``except:``).
RESEND_S = 5.0


def _stop(processes: list[Any]) -> None:
    """SIGTERM the workers still running (again every RESEND_S), then SIGKILL those that outlive
    STOP_GRACE_S (a journal study recovers their trials by pid on resume)."""
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        alive = [p for p in processes if p.is_alive()]
        if not alive:
            return
        for process in alive:
            process.terminate()
        for process in alive:
            process.join(min(RESEND_S, max(0.0, deadline - time.monotonic())))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
