"""The GP's pruning prior: a point sparser than a trial that missed the accuracy floor is never tried."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from pipeline.search.config import Constraint, load_sweep
from pipeline.search.engine import (STARTUP_TRIALS, SweepRunner, TrialOutcome, make_sampler,
                                     open_study)
from pipeline.search.monotone import MonotoneGPSampler, RuledOut, violation_trend
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
    failed = RuledOut(sparse=np.array([True, True, False]), above=np.array([[0.5, 0.5, 0.0]]),
                      below=np.empty((0, 3)))
    x = torch.tensor([[0.5, 0.5, 0.0], [0.6, 0.9, 0.0], [0.4, 0.9, 0.0], [0.6, 0.9, 1.0]],
                     dtype=torch.float64)
    assert failed.mask(x).tolist() == [True, True, False, False]


def _sparser_than_a_failure(records, startup: int) -> list[int]:
    """Model-based trials that prune each group at least as much as an earlier failed trial."""
    failed, offenders = [], []
    for r in records:
        if r.number >= startup and any(
                f["lr"] == r.params["lr"] and r.params["a_desired_sparsity"] >= f["a_desired_sparsity"]
                and r.params["b_desired_sparsity"] >= f["b_desired_sparsity"] for f in failed):
            offenders.append(r.number)
        if r.metrics["Top1"] < 50:
            failed.append(r.params)
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
    assert isinstance(study.sampler, MonotoneGPSampler)
    records = SweepRunner(config, study, _cliff, tmp_path, n_trials=14).run()
    assert _sparser_than_a_failure(records, STARTUP_TRIALS) == []
    assert any(r.metrics["Top1"] < 50 for r in records), "the test needs trials that missed the floor"
    best = min((r for r in records if r.metrics["Top1"] >= 50), key=lambda r: r.metrics["Latency"])
    assert best.metrics["Top1"] == pytest.approx(50, abs=8)


def test_optunas_plain_gp_does_propose_them(tmp_path):
    # What the prior is for: the same sweep, seeds and start-up, without it.
    config = load_sweep(SWEEP)
    offenders = []
    for seed in range(4):
        plain = optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        study = open_study(config, open_storage(tmp_path / str(seed)), "plain", sampler=plain)
        records = SweepRunner(config, study, _cliff, tmp_path / str(seed), n_trials=14).run()
        offenders += _sparser_than_a_failure(records, STARTUP_TRIALS)
    assert offenders


def test_without_constraints_the_gp_is_optunas():
    config = load_sweep(SWEEP.replace('  edgeprune: {value: {constraints: ["Top1 >= 50"]}}\n', ""))
    sampler = make_sampler(config, seed=0)
    assert isinstance(sampler, optuna.samplers.GPSampler) and sampler._trends == {}
