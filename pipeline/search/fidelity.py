"""Multi-fidelity search: rapid trials, short fine-tuning of the promising, full fine-tuning of the best.

Synchronous successive halving (Jamieson & Talwalkar, 2016) as an explicit rung loop over the
study's trials, configured by the sweep's ``edgeprune`` extension ``fidelity:`` (``Fidelity``):

- rung 0: every Optuna trial of the study is a rapid one (``pipeline.rapid``: prune, adaptive
  BN, Top1 on ``rapid`` val images, predicted latency; no export, no consumer, about a second
  for ResNet56). The sampler learns from these alone, so it models one fidelity: its values are
  the rapid figures (``RAPID_ALIASES``: Total_Latency -> Total_Latency_predicted, Top1 ->
  Top1_before), and the accuracy constraints are left to the measured rungs (a floor meant for
  fine-tuned accuracy would rule out every untrained architecture);
- rung 1: the best ``promote`` share of the rapid trials (non-dominated sorting on those
  figures, then the first objective) is fine-tuned ``short_epochs`` and measured by the consumer;
- rung 2 (``full_epochs`` > 0): the best ``promote`` share of rung 1, on the measured figures, is
  fine-tuned ``full_epochs`` and measured.

Why not ``optuna.pruners.SuccessiveHalvingPruner``: it judges one value reported per step, and
Optuna refuses ``trial.report`` in multi-objective studies, while our sweeps rank latency against
accuracy; and a rung here is a different job (no retraining, then retraining on the device's
queue), not the next step of one running trial. Every model that is retrained, and so every model
that can reach the front, is measured on the device; its rung record (study user attribute
``rung:<r>:<number>``, so every worker and ``load_trials`` sees it) holds the measured
Total_Latency with the prediction kept as Total_Latency_predicted, and the final ranking
(``best_trials``, with the sweep's constraints) reads those measured records only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import optuna

from pipeline.errors import SweepError
from pipeline.flow import PREDICTED, PREDICTED_METRIC, RunConfig
from pipeline.messages import TrialRecord
from pipeline.settings import Settings
from pipeline.status import TrialStatus

from .config import GateOptions, Objective, SweepConfig
from .engine import (
    SweepRunner,
    TrialContext,
    TrialFunction,
    TrialOutcome,
    finite_number,
    make_sampler,
    worker_died,
    worker_id,
)
from .gate import PREDICTED_RELATIVE
from .mapping import load_base_schedule
from .storage import json_safe, rung_entries, rung_key
from .trials import run_config_for

if TYPE_CHECKING:
    from pipeline.latency import LatencyModels

log = logging.getLogger(__name__)

#: The rapid figure a rung-0 trial is ranked by, per objective metric.
RAPID_ALIASES = {PREDICTED_METRIC: PREDICTED, "Relative_Latency": PREDICTED_RELATIVE,
                 "Top1": "Top1_before", "Top5": "Top5_before"}
#: Extra metric of a rung record: which rung it is (0 rapid, 1 short, 2 full fine-tuning).
RUNG_METRIC = "rung"


def rapid_config(config: SweepConfig) -> SweepConfig:
    """``config`` as rung 0 sees it: objectives on the rapid figures, no constraints, no gate and
    no early stopping (nothing retrains)."""
    missing = [o.name for o in config.objectives if o.name not in RAPID_ALIASES]
    if missing:
        raise SweepError(f"{config.source}: fidelity ranks rapid trials on predicted "
                         f"{PREDICTED_METRIC} and adaptive-BN Top1, but the sweep optimises "
                         f"{', '.join(missing)}: use metrics among {', '.join(RAPID_ALIASES)}, "
                         "or drop fidelity")
    objectives = [Objective(RAPID_ALIASES[o.name], o.goal) for o in config.objectives]
    return dataclasses.replace(config, objectives=objectives, constraints=[], gate=GateOptions(),
                               early_terminate=None, early_stop_rule="", fidelity=None)


def make_rapid_trial_function(base: RunConfig, settings: Settings, latency_models: "LatencyModels",
                              images: int) -> TrialFunction:
    """Rung 0's trial function: the trial's parameters on ``base``, one ``RapidEvaluator`` call
    (data and the pretrained model loaded once, here)."""
    from pipeline.rapid import RapidEvaluator

    evaluator = RapidEvaluator(base, settings, latency_models, images)
    schedule = load_base_schedule(base.schedule)

    def run(context: TrialContext) -> TrialOutcome:
        config = run_config_for(base, context.params, schedule)
        result = evaluator(config)
        metrics = {**result.metrics, RUNG_METRIC: 0}
        if isinstance(metrics.get(PREDICTED), (int, float)):
            # Over the unpruned base's median: the predicted Relative_Latency a sweep ranks by.
            reference_ms = latency_models.require(config.target, base.model).reference_ms
            metrics[PREDICTED_RELATIVE] = round(metrics[PREDICTED] / reference_ms, 5)
        return TrialOutcome(result.status, metrics, result.reason, sum(result.stage_seconds.values()))

    return run


def promote(records: Sequence[TrialRecord], objectives: Sequence[Objective], share: float,
            gate: GateOptions | None = None) -> list[TrialRecord]:
    """The best ``ceil(share * n)`` of ``records`` that have every objective (and pass the gate's
    limit, when it has one): by non-dominated layer, then by the first objective."""
    names = [o.name for o in objectives]
    candidates = [r for r in records if all(finite_number(r.metrics.get(n)) for n in names)]
    if gate is not None and gate.limit is not None and gate.metric:
        metric = gate.metric if gate.metric in names else RAPID_ALIASES.get(gate.metric, gate.metric)
        candidates = [r for r in candidates if not (finite_number(r.metrics.get(metric))
                                                    and r.metrics[metric] > gate.limit)]
    if not candidates:
        return []
    signs = [1.0 if o.minimize else -1.0 for o in objectives]

    def key(r: TrialRecord) -> tuple[float, ...]:
        return tuple(s * float(r.metrics[n]) for s, n in zip(signs, names))

    layer_of: dict[int, int] = {}
    left, layer = list(candidates), 0
    while left:
        front = [r for r in left if not any(dominates(key(o), key(r)) for o in left)]
        for r in front:
            layer_of[r.number] = layer
        left = [r for r in left if r.number not in layer_of]
        layer += 1
    ranked = sorted(candidates, key=lambda r: (layer_of[r.number], key(r)))
    return ranked[:math.ceil(share * len(candidates))]


class MultiFidelityRunner:
    """Rapid trials until the study holds ``n_trials``, then the promoted rungs (module docstring)."""

    def __init__(self, config: SweepConfig, study: optuna.Study, rapid_fn: TrialFunction,
                 trial_fn: TrialFunction, out_dir: Path, n_trials: int, seed: int | None = None,
                 on_record: Callable[[TrialRecord], None] | None = None,
                 heartbeat_s: float | None = None):
        if config.fidelity is None:
            raise ValueError("MultiFidelityRunner needs a sweep with fidelity")
        self.config = config
        self.fidelity = config.fidelity
        self.rapid = rapid_config(config)
        self.study = study
        self.trial_fn = trial_fn
        self.out_dir = Path(out_dir)
        self.on_record = on_record
        # The sampler models the rapid figures only (no constraints): see rapid_config.
        study.sampler = make_sampler(self.rapid, seed)
        self.runner = SweepRunner(self.rapid, study, rapid_fn, out_dir, n_trials, heartbeat_s=heartbeat_s,
                                  on_record=on_record)

    def run(self) -> list[TrialRecord]:
        """Run rung 0, then each promoted rung; returns the records this worker produced."""
        records = self.runner.run()
        previous = [r for r in self.runner.finished_records() if r.status == TrialStatus.RAPID]
        objectives = self.rapid.objectives
        gate: GateOptions | None = self.config.gate
        for rung, epochs in enumerate(self.fidelity.rungs, start=1):
            chosen = promote(previous, objectives, self.fidelity.promote, gate)
            log.info("rung %d: %d of %d trials fine-tuned %d epoch(s)", rung, len(chosen), len(previous), epochs)
            records += [r for r in (self.run_rung(rung, epochs, c) for c in chosen) if r is not None]
            previous = [TrialRecord.from_dict(dict(rec, number=number))
                        for (_, number), rec in rung_entries(self.study.user_attrs, rung).items()
                        if rec.get("status") == TrialStatus.OK]
            objectives, gate = self.config.objectives, None
        return records

    def run_rung(self, rung: int, epochs: int, rapid: TrialRecord) -> TrialRecord | None:
        """Fine-tune and measure ``rapid``'s architecture ``epochs`` epochs as rung ``rung``; None
        when another worker has it (claimed in the study's user attributes)."""
        key = rung_key(rung, rapid.number)
        claim = self.study.user_attrs.get(key)
        # Claimed by a live worker, or done; a claim of a process of this host that died is rerun.
        if claim and not (claim.get("status") == TrialStatus.RUNNING and worker_died(claim.get("worker", ""))):
            return None
        started = time.time()
        self.study.set_user_attr(key, {"status": TrialStatus.RUNNING, "worker": worker_id(), "started_at": started})
        params = dict(rapid.params, epochs=epochs)
        run_dir = self.out_dir / "trials" / f"{rapid.number:04d}" / f"rung{rung}"
        try:
            outcome = self.trial_fn(TrialContext(rapid.number, params, run_dir))
        except KeyboardInterrupt:
            self.study.set_user_attr(key, None)  # released: a resumed sweep runs it again
            raise
        except Exception as exc:  # one bad trial must not end the sweep; its reason is kept
            log.exception("rung %d of trial %d failed", rung, rapid.number)
            outcome = TrialOutcome(TrialStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")
        # The prediction stays beside the measured figure; the rapid Top1 beside the fine-tuned one.
        kept = {PREDICTED: rapid.metrics.get(PREDICTED),
                PREDICTED_RELATIVE: rapid.metrics.get(PREDICTED_RELATIVE),
                "Top1_rapid": rapid.metrics.get("Top1_before")}
        record = TrialRecord(number=rapid.number, status=str(outcome.status), params=params,
                             metrics=json_safe({**kept, **outcome.metrics, RUNG_METRIC: rung}),
                             reason=outcome.reason, started_at=started, finished_at=time.time(),
                             compute_s=outcome.compute_s or time.time() - started,
                             run_dir=outcome.run_dir or str(run_dir))
        self.study.set_user_attr(key, {k: v for k, v in record.to_dict().items() if k != "number"})
        if self.on_record is not None:
            self.on_record(record)
        return record


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b``, every objective minimised: no worse in any, better in one."""
    return all(x <= y for x, y in zip(a, b)) and tuple(a) != tuple(b)

