"""The GP's pruning prior: it never tries a point sparser than a trial that missed the accuracy
floor, nor, minimising latency, a point no sparser than a trial that met it; and the feasibility
weight, each constraint told twice."""

from __future__ import annotations

import pytest

from pipeline.search.config import Constraint, load_sweep
from pipeline.search.engine import (STARTUP_TRIALS, SweepRunner, TrialOutcome, bayes_sampler,
                                     make_sampler, open_study)
from pipeline.search.monotone import (MonotoneSampler, RuledOut, improvement_trend,
                                      violation_trend)
from pipeline.search.storage import open_storage

SWEEP = """
method: bayes
metric: {name: Latency, goal: minimize}
parameters:
  a_desired_sparsity: {distribution: q_uniform, min: 0.0, max: 0.9, q: 0.1}
  b_desired_sparsity: {distribution: q_uniform, min: 0.0, max: 0.9, q: 0.1}
  lr: {values: [0.1, 0.01]}
  edgeprune: {value: {constraints: ["Top1 >= 50"]}}
"""


def test_violation_trend_follows_the_metric_and_the_bound():
    assert violation_trend(Constraint("Top1", ">=", 80)) == 1       # accuracy falls with sparsity
    assert violation_trend(Constraint("Latency", "<=", 2.0)) == -1  # latency falls too
    assert violation_trend(Constraint("Throughput", ">=", 900)) == -1
    assert violation_trend(Constraint("epochs_run", ">=", 3)) == 0  # unknown: rules nothing out


def test_ruled_out_needs_every_sparsity_past_the_failure_and_the_rest_equal():
    failed = RuledOut(sparse={"a", "b"}, above=[{"a": 0.5, "b": 0.5, "lr": 0.1}])
    points = [(0.5, 0.5, 0.1), (0.6, 0.9, 0.1), (0.4, 0.9, 0.1), (0.6, 0.9, 0.01)]
    assert [failed.rules_out(dict(zip("a b lr".split(), p))) for p in points] == [True, True, False, False]
    beaten = RuledOut(sparse={"a", "b"}, below=[{"a": 0.5, "b": 0.5, "lr": 0.1}])
    assert [beaten.rules_out(dict(zip("a b lr".split(), p))) for p in points] == [True, False, False, False]


def test_improvement_trend_follows_the_metric_and_the_goal():
    assert improvement_trend("Latency", "minimize") == 1      # more sparsity can only help
    assert improvement_trend("Latency", "maximize") == -1     # less sparsity can only help
    assert improvement_trend("Throughput", "maximize") == 1
    assert improvement_trend("Top1", "maximize") == 0         # fine-tuning may not follow
    assert improvement_trend("epochs_run", "minimize") == 0   # unknown: rules nothing out


SPARSITIES = ("a_desired_sparsity", "b_desired_sparsity")


def _ruled_out_trials(records, startup: int, failed: bool) -> list[int]:
    """Model-based trials that prune each group at least as much as an earlier trial that missed
    the floor (``failed``), or at most as much as one that met it (not ``failed``)."""
    sign = 1 if failed else -1
    earlier, offenders = [], []
    for r in records:
        if r.number >= startup and any(
                f["lr"] == r.params["lr"] and all(sign * (r.params[k] - f[k]) >= -1e-9 for k in SPARSITIES)
                for f in earlier):
            offenders.append(r.number)
        if (r.metrics["Top1"] < 50) == failed:
            earlier.append(r.params)
    return offenders


def _cliff(context):
    # Accuracy falls with sparsity, then the network collapses to chance; latency falls throughout.
    total = context.params["a_desired_sparsity"] + 2 * context.params["b_desired_sparsity"]
    return TrialOutcome("ok", {"Top1": 80 - 20 * total if total <= 1.2 else 10.0,
                               "Latency": 2.0 - total})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gp_never_proposes_what_a_failed_trial_ruled_out(tmp_path, seed):
    config = load_sweep(SWEEP)
    study = open_study(config, open_storage(tmp_path), "monotone", seed=seed)
    assert isinstance(study.sampler, MonotoneSampler)
    records = SweepRunner(config, study, _cliff, tmp_path, n_trials=14).run()
    assert _ruled_out_trials(records, STARTUP_TRIALS, failed=True) == []
    assert _ruled_out_trials(records, STARTUP_TRIALS, failed=False) == []
    assert any(r.metrics["Top1"] < 50 for r in records), "the test needs trials that missed the floor"
    best = min((r for r in records if r.metrics["Top1"] >= 50), key=lambda r: r.metrics["Latency"])
    assert best.metrics["Top1"] == pytest.approx(50, abs=8)


def _missed_floor(tmp_path, feasibility_weight: float) -> int:
    """Model-based trials under the floor, over four seeds of the cliff sweep."""
    config = load_sweep(SWEEP)
    missed = 0
    for seed in range(4):
        sampler = bayes_sampler("gp", seed, STARTUP_TRIALS, config.constraints, config.objectives,
                                feasibility_weight=feasibility_weight)
        folder = tmp_path / f"{feasibility_weight}-{seed}"
        study = open_study(config, open_storage(folder), "weighted", sampler=sampler)
        records = SweepRunner(config, study, _cliff, folder, n_trials=14).run()
        missed += sum(r.metrics["Top1"] < 50 for r in records if r.number >= STARTUP_TRIALS)
    return missed


def test_weighting_feasibility_proposes_fewer_points_under_the_floor(tmp_path):
    assert _missed_floor(tmp_path, 2) < _missed_floor(tmp_path, 1)


def test_the_weight_tells_each_constraint_as_many_times(tmp_path):
    config = load_sweep(SWEEP)
    sampler = bayes_sampler("gp", 0, STARTUP_TRIALS, config.constraints, config.objectives,
                            feasibility_weight=3)
    study = open_study(config, open_storage(tmp_path), "told", sampler=sampler)
    SweepRunner(config, study, _cliff, tmp_path, n_trials=1).run()
    told = study.trials[0].constraints
    assert len(told) == 3 and len(set(told.values())) == 1 and "Top1 >= 50" in told


def test_with_several_objectives_and_no_constraints_the_gp_is_optunas():
    # A slower point may still be more accurate, so nothing rules it out.
    config = load_sweep(SWEEP.replace('  edgeprune: {value: {constraints: ["Top1 >= 50"]}}\n',
                                      '  edgeprune: {value: {metrics: [{name: Latency, goal: minimize},'
                                      ' {name: Top1, goal: maximize}]}}\n'))
    sampler = make_sampler(config, seed=0)
    assert isinstance(sampler, MonotoneSampler)
    assert sampler.trends == {} and sampler.objective_trend == 0
