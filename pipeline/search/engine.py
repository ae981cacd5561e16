"""The local sweep engine: an Optuna study driven by ask/tell over a trial function.

Sampler per ``method``: ``grid`` → ``GridSampler``; ``random`` → ``RandomSampler``; ``bayes`` →
``GPSampler`` (a Gaussian process): W&B's own bayes method is a GP, so the same file searches the
same way in both places; a GP is the most sample-efficient model for what we have (a few dozen
expensive trials over a handful of parameters; benchmarks/search_efficiency.py measures it against
TPE and random); and Optuna 5's GPSampler covers every case of our spaces: float/int/categorical
parameters, several objectives (log EHVI), the accuracy floor (constrained EI, from
``Trial.set_constraint``) and parallel workers (q-batch EI over running trials). Ours adds what
we know of pruning (``monotone``): it never proposes what a trial that failed a floor ruled out,
nor, with one objective, a point that cannot beat a feasible trial; and it weights P(feasible)
twice in constrained EI (``FEASIBILITY_WEIGHT``, each constraint told twice).
The extension key ``sampler: tpe`` switches to multivariate TPE (cheaper to fit when trials are
many and fast).

The trial function is injected (``TrialFunction``): the library knows nothing of producers or
queues. Each trial leaves a TrialRecord in its user attributes (see ``storage``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeGuard

import numpy as np
import optuna
from optuna.trial import TrialState

from pipeline.errors import SweepError
from pipeline.measure.noise import unranked_figures
from pipeline.messages import Target, TrialRecord
from pipeline.status import TrialStatus

from .config import Constraint, Goal, Objective, SweepConfig
from .early_stop import EarlyStopper
from .gate import GateRules, LatencyGate, MeasureFn, PredictingGate, StudyLatencyCache
from .monotone import MonotoneSampler, constraint_keys, improvement_trend, violation_trend
from .space import SearchSpace
from .storage import INTERRUPTED, RECORD_ATTR, json_safe, record_of, was_interrupted

if TYPE_CHECKING:
    from pipeline.latency import LatencyModels

log = logging.getLogger(__name__)

#: Seconds between looks at other workers' running trials once this worker's budget is spent.
RUNNING_POLL_S = 2.0

#: The statuses a finished trial can have.
STATUSES = (TrialStatus.OK, TrialStatus.COLLAPSED, TrialStatus.GATED, TrialStatus.EARLY_STOPPED,
            TrialStatus.FAILED, TrialStatus.RAPID)
CURVE_ATTR = "curve"
#: Violation recorded for a constraint whose metric a trial never produced (e.g. Top1 of a gated trial).
_MISSING_VIOLATION = 1e6


@dataclass
class TrialOutcome:
    """What a trial function returns: the TrialRecord fields the trial itself knows."""

    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    compute_s: float = 0.0
    run_dir: str = ""


@dataclass
class TrialContext:
    """What a trial function gets: its parameters, a folder, and the callbacks for ``produce``."""

    number: int
    params: dict[str, Any]
    run_dir: Path
    #: ``gate(onnx_path, facts) -> reason | None`` for ``produce``; None when the sweep has no gate.
    gate: Callable[..., str | None] | None = None
    #: ``on_epoch(epoch, accuracy) -> bool`` for ``produce``; None when nothing stops early.
    on_epoch: Callable[[int, Any], bool] | None = None


TrialFunction = Callable[[TrialContext], TrialOutcome]


def study_name_of(config: SweepConfig) -> str:
    """The study name: the sweep's ``name``, else its file name without suffix."""
    return config.name or Path(config.source).stem or "sweep"


def make_sampler(config: SweepConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler for ``config.method`` (see the module docstring for the choice)."""
    if config.method == "grid":
        return optuna.samplers.GridSampler(SearchSpace(config).grid(), seed=seed)
    if config.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return bayes_sampler(config.bayes_sampler, seed, constraints=config.constraints,
                         objectives=config.objectives)


#: Random trials before the model takes over (Optuna's default is ten: our trials cost minutes;
#: on the ResNet56 rapid sweep three reached random search's best in 0.27 of random's expected
#: trials, five in 0.36, see docs/results.md, Search).
STARTUP_TRIALS = 3


#: Constrained EI is EI x P(feasible). Beyond an accuracy cliff the expected gain is large and the
#: constraint model unsure, so with P(feasible) as is two thirds of the GP's trials on the ResNet56
#: rapid sweep missed the floor; P(feasible) squared cut that to half and reached random search's
#: best in fewer trials (benchmarks/search_surrogate.py, docs/results.md "Search"). Squared by telling each
#: constraint twice (``monotone.constraint_keys``): constrained EI adds each one's log P(feasible).
FEASIBILITY_WEIGHT = 2


def bayes_sampler(kind: str = "gp", seed: int | None = None, startup: int = STARTUP_TRIALS,
                  constraints: Sequence[Constraint] = (), objectives: Sequence[Objective] = (),
                  feasibility_weight: int = FEASIBILITY_WEIGHT,
                  **gp_options: Any) -> optuna.samplers.BaseSampler:
    """``gp`` (default) or ``tpe``, each after ``startup`` random trials.

    The GP knows that more sparsity never wins back accuracy or speed (``monotone``): it does not
    propose what a trial that failed one of ``constraints`` has ruled out, nor, with a single
    objective, a point that cannot beat a trial that met them. ``feasibility_weight`` is the power
    of P(feasible) in constrained EI (how many times ``SweepRunner`` tells each constraint);
    ``gp_options`` go to GPSampler (benchmarks try both, e.g. ``deterministic_objective``).
    """
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=startup)
    single = objectives[0] if len(objectives) == 1 else None
    gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, **gp_options)
    return MonotoneSampler(gp, trends={str(c): violation_trend(c) for c in constraints},
                           objective_trend=improvement_trend(single.name, single.goal) if single else 0,
                           feasibility_weight=feasibility_weight, seed=seed)


def resume_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The sampler seed of a worker that joins a study already holding ``trials_so_far`` trials.

    A sampler seeded as the first run's draws that run's proposals again (a resumed random sweep
    repeated 3 of its first 4 trials); mixing in the trial count continues with new ones. A new
    study keeps ``seed`` itself, so a fresh sweep is reproducible.
    """
    if seed is None or trials_so_far == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, trials_so_far]).generate_state(1)[0])


def open_study(config: SweepConfig, storage: optuna.storages.BaseStorage,
               study_name: str | None = None, seed: int | None = None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the sweep's study, or join it (resume, or another worker) when it exists.

    ``sampler`` replaces the one ``method`` implies (benchmarks compare samplers this way); the
    implied one is seeded by ``resume_seed``.
    """
    name = study_name or study_name_of(config)
    # A sweep without metric (W&B allows it for grid and random) ranks nothing: one placeholder
    # direction, told 0.0 per finished trial (_objective), which those samplers ignore.
    directions: list[Goal] = [o.goal for o in config.objectives] or ["minimize"]
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                sampler=sampler or make_sampler(config, seed),
                                directions=directions)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise SweepError(f"study {name!r} already exists with directions {stored}, but the sweep "
                         f"asks for {directions}: give the sweep another name or --study")
    joined_seed = resume_seed(seed, len(study.get_trials(deepcopy=False)))
    if sampler is None and joined_seed != seed:
        study.sampler = make_sampler(config, joined_seed)
    if "sweep" not in study.user_attrs:
        study.set_user_attr("sweep", json_safe(config.raw))
    return study


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_died(worker: str) -> bool:
    """True when ``worker`` (a ``worker_id``) was a process of this host that is gone; a worker
    on another host is never judged here (its database heartbeat is)."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


class SweepRunner:
    """Runs trials of one study until it holds ``n_trials`` (shared by every worker)."""

    def __init__(self, config: SweepConfig, study: optuna.Study, trial_fn: TrialFunction,
                 out_dir: Path, n_trials: int, measure: MeasureFn | None = None,
                 target: Target | None = None, on_record: Callable[[TrialRecord], None] | None = None,
                 heartbeat_s: float | None = None, latency_models: "LatencyModels | None" = None):
        """``heartbeat_s``: the storage's trial heartbeat interval (``storage.heartbeat_interval``);
        with one, a worker whose budget is spent waits for the running trials of others, as their
        worker may have died (their trials are then failed and rerun). ``latency_models``
        (``predictor.study_latency_models``): the gate predicts on the one of a trial's target
        instead of measuring."""
        self.config = config
        self.study = study
        self.trial_fn = trial_fn
        self.out_dir = Path(out_dir)
        self.n_trials = min(n_trials, config.run_cap) if config.run_cap else n_trials
        self.measure = measure
        self.target = target or Target()
        self.on_record = on_record
        self.heartbeat_s = heartbeat_s
        self.latency_models = latency_models
        self.space = SearchSpace(config)
        #: Fresh latency measurements made by this runner's gates (cache hits excluded).
        self.gate_measurements = 0

    # -- budget and resume ------------------------------------------------------------------
    def counted_trials(self) -> int:
        """Trials that use up the budget: started ones, except those interrupted (they rerun)."""
        started = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return sum(1 for t in self.study.get_trials(deepcopy=False, states=started)
                   if not was_interrupted(t))

    def budget_left(self) -> bool:
        if self.counted_trials() >= self.n_trials:
            return False
        sampler = self.study.sampler
        return not (isinstance(sampler, optuna.samplers.GridSampler)
                    and sampler.is_exhausted(self.study))

    def recover_interrupted(self) -> int:
        """Fail this host's running trials whose process died, and queue their params again.

        For a journal study (one machine); a database study finds dead workers' trials on any
        host by their heartbeat instead (``fail_stale_trials``).
        """
        recovered = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not worker_died(t.user_attrs.get(RECORD_ATTR, {}).get("worker", "")):
                continue
            self.study.tell(t.number, state=TrialState.FAIL)  # record_of reads it as INTERRUPTED
            self.study.enqueue_trial(t.params, skip_if_exists=False)
            recovered += 1
        return recovered

    # -- trials -----------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        """Run trials until the budget is spent; returns the records this worker produced.

        With a heartbeat, the worker then waits while other workers' trials run: one whose
        worker died stops beating, is failed after the grace period and rerun here.
        """
        records = []
        while True:
            if self.budget_left():
                records.append(self.run_one())
            elif self.heartbeat_s and self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                # Polled more often than the heartbeat: a worker sleeping a whole heartbeat (30 s)
                # after the other workers' last trials ended kept the sweep waiting for it.
                time.sleep(min(self.heartbeat_s, RUNNING_POLL_S))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)
            else:
                return records

    def run_one(self) -> TrialRecord:
        """One trial through ``Study.optimize``, which keeps its heartbeat on a database study and
        first fails the trials whose heartbeat stopped."""
        finished: list[TrialRecord] = []
        self.study.optimize(lambda trial: self._objective(trial, finished), n_trials=1,
                            catch=(_TrialFailed,))
        if self.on_record is not None:
            self.on_record(finished[0])
        return finished[0]

    def _objective(self, trial: optuna.Trial, finished: list[TrialRecord]) -> list[float]:
        params = self.space.suggest(trial)
        run_dir = self.out_dir / "trials" / f"{trial.number:04d}"
        started = time.time()
        base = {"params": json_safe(params), "status": TrialStatus.RUNNING, "started_at": started,
                "run_dir": str(run_dir), "worker": worker_id()}
        trial.set_user_attr(RECORD_ATTR, base)
        gate = self._gate_for(params)
        stop_reason: list[str] = []
        context = TrialContext(trial.number, params, run_dir, gate,
                               self._on_epoch(trial, stop_reason))
        try:
            outcome = self.trial_fn(context)
        except KeyboardInterrupt:
            self._record(trial, base, TrialOutcome(TrialStatus.FAILED, reason=INTERRUPTED), started)
            self.study.enqueue_trial(trial.params, skip_if_exists=False)  # the resumed sweep reruns it
            raise
        except Exception as exc:  # one bad trial must not end the sweep; its reason is kept
            log.exception("trial %d failed", trial.number)
            outcome = TrialOutcome(TrialStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")
        if gate is not None:
            self.gate_measurements += gate.measurements
            if outcome.status == TrialStatus.GATED:
                outcome.metrics = {**gate.metrics, **outcome.metrics}
        if outcome.status == TrialStatus.EARLY_STOPPED and stop_reason:
            outcome.reason = stop_reason[0]
        record = self._record(trial, base, outcome, started)
        finished.append(record)
        # A sweep without metric tells one placeholder value (open_study's placeholder direction).
        values = [record.metrics.get(o.name) for o in self.config.objectives] or [0.0]
        if record.status == TrialStatus.FAILED:
            raise _TrialFailed(record.reason)
        ranked = [float(v) for v in values if finite_number(v)]
        if len(ranked) < len(values) or unranked_figures(record.metrics, self.config.ranked_metrics):
            # Gated or stopped without every objective, or a noisy figure: no value to learn from.
            raise optuna.TrialPruned(record.reason)
        return ranked

    def _record(self, trial: optuna.Trial, base: dict[str, Any], outcome: TrialOutcome,
                started: float) -> TrialRecord:
        """Store the trial's record and constraint values; Optuna then tells its state."""
        if outcome.status not in STATUSES:
            raise ValueError(f"trial function returned status {outcome.status!r}; use one of {STATUSES}")
        metrics = json_safe(outcome.metrics)
        # A flagged figure the consumer did not time again (pipeline/measure/noise.py) is recorded
        # with its flag but never ranks the search: _objective tells the trial without values.
        noisy = unranked_figures(metrics, self.config.ranked_metrics)
        reason = outcome.reason or (f"not ranked: {', '.join(noisy)} "
                                    f"{metrics['measurement_flag']}" if noisy else "")
        record = dict(base, status=outcome.status, metrics=metrics, reason=reason,
                      finished_at=time.time(), run_dir=outcome.run_dir or base["run_dir"],
                      compute_s=outcome.compute_s or time.time() - started)
        trial.set_user_attr(RECORD_ATTR, record)
        sampler = self.study.sampler
        weight = sampler.feasibility_weight if isinstance(sampler, MonotoneSampler) else 1
        for c in self.config.constraints:
            # Samplers read these (Optuna 5's set_constraint): <= 0 feasible.
            violation = c.violation(metrics[c.metric]) if finite_number(metrics.get(c.metric)) else _MISSING_VIOLATION
            for key in constraint_keys(str(c), weight):
                trial.set_constraint(key, violation)
        return TrialRecord.from_dict(dict(record, number=trial.number))

    def _gate_for(self, params: dict[str, Any]) -> GateRules | None:
        if not self.config.gate.active:
            return None
        precision = params.get("precision", self.target.precision)
        target = Target(self.target.backend, self.target.device, str(precision))
        # A searched precision the model was not fitted for is measured, not predicted.
        model = self.latency_models.for_target(target) if self.latency_models is not None else None
        if model is not None:
            return PredictingGate(self.config.gate, target, model, finished=self.finished_records)
        if self.measure is None:
            return None
        return LatencyGate(self.config.gate, target, self.measure, StudyLatencyCache(self.study),
                           finished=self.finished_records)

    def finished_records(self) -> list[TrialRecord]:
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return [record_of(t) for t in self.study.get_trials(deepcopy=False, states=done)]

    def _on_epoch(self, trial: optuna.Trial, stop_reason: list[str]
                  ) -> Callable[[int, Any], bool] | None:
        rule = self.config.early_stop_rule
        if not rule:
            return None
        stopper = EarlyStopper(rule, self.config.early_terminate)
        curve: dict[str, float] = {}

        def on_epoch(epoch: int, accuracy: Any) -> bool:
            done = epoch + 1  # train() counts epochs from 0
            top1 = float(getattr(accuracy, "top1", accuracy))
            curve[str(done)] = top1
            trial.set_user_attr(CURVE_ATTR, dict(curve))
            # Whole curves: W&B's hyperband ranks at the last band reached, not at this epoch.
            peers = [curve_values(t.user_attrs.get(CURVE_ATTR, {}))
                     for t in self.study.get_trials(deepcopy=False) if t.number != trial.number]
            reason = stopper.judge(curve_values(curve), peers)
            if reason:
                stop_reason.append(reason)
                return False
            return True

        return on_epoch


def curve_values(curve: dict[str, float]) -> list[float]:
    """A stored curve (``{"1": top1, "2": ...}``) as Top1 after epochs 1, 2, ... (stops at a gap)."""
    values: list[float] = []
    while str(len(values) + 1) in curve:
        values.append(float(curve[str(len(values) + 1)]))
    return values


def best_trials(config: SweepConfig, records: list[TrialRecord]) -> list[TrialRecord]:
    """The best feasible trial (one objective) or the feasible Pareto front (several); none
    when the sweep has no metric."""
    if not config.objectives:
        return []
    feasible = [r for r in records if r.status in (TrialStatus.OK, TrialStatus.COLLAPSED, TrialStatus.GATED)
                and not unranked_figures(r.metrics, config.ranked_metrics)
                and all(finite_number(r.metrics.get(o.name)) for o in config.objectives)
                and all(finite_number(r.metrics.get(c.metric)) and c.violation(r.metrics[c.metric]) <= 0
                        for c in config.constraints)]
    signs = [1.0 if o.minimize else -1.0 for o in config.objectives]

    def key(r: TrialRecord) -> list[float]:
        return [s * float(r.metrics[o.name]) for s, o in zip(signs, config.objectives)]

    if len(config.objectives) == 1:
        return sorted(feasible, key=key)[:1]
    front = []
    for r in feasible:
        kr = key(r)
        if not any(all(a <= b for a, b in zip(key(o), kr)) and key(o) != kr for o in feasible):
            front.append(r)
    return sorted(front, key=key)


class _TrialFailed(Exception):
    """A trial that finished as failed: ``Study.optimize`` records it as FAIL and goes on."""


def finite_number(value: Any) -> TypeGuard[float]:
    """A real, finite number (not a bool, not nan/inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
