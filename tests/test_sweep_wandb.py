"""The sweep loader against W&B's own validator and hyperband code (the ``sweeps`` package), on
real W&B example sweeps (tests/data/wandb_sweeps, sources in each file's first lines)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml

from pipeline.errors import SweepError
from pipeline.search.config import Hyperband, load_sweep
from pipeline.search.engine import SweepRunner, TrialOutcome, best_trials, open_study
from pipeline.search.mapping import check_mapping
from pipeline.search.space import SearchSpace
from pipeline.search.storage import open_storage
from pipeline.search.wandb_schema import wandb_violations

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "tests" / "data" / "wandb_sweeps").glob("*.yaml"))
RESNET56 = REPO / "schedules" / "resnet56_filter_rank.yaml"


def _raw(name: str) -> dict:
    return yaml.safe_load((REPO / "tests" / "data" / "wandb_sweeps" / name).read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_real_wandb_example_sweeps_load_as_wandb_accepts_them(path):
    assert wandb_violations(yaml.safe_load(path.read_text())) == []  # W&B's own verdict
    config = load_sweep(path)
    assert config.parameters


def test_fastai_log_uniform_bounds_are_exponents_and_map_onto_lr():
    # The fastai example's learning_rate (log_uniform, min -11, max -2) as our lr run setting:
    # the bounds are exponents of e, so the values are e^-11..e^-2, all valid learning rates.
    raw = _raw("fastai1_simpsons.yaml")
    raw["parameters"] = {"lr": raw["parameters"]["learning_rate"],
                         "epochs": raw["parameters"]["epochs"],
                         "filter_pruner_70_desired_sparsity": {"min": 0.1, "max": 0.5}}
    config = load_sweep(raw)
    check_mapping(config.parameters, RESNET56)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace(config)
    for _ in range(50):
        trial = study.ask()
        lr = space.suggest(trial)["lr"]
        study.tell(trial, 0.0)
        assert math.exp(-11) <= lr <= math.exp(-2)


def _wandb_bands(max_iter=None, min_iter=None, s=None, eta=3) -> list[int]:
    """The brackets W&B's own hyperband code computes (sweeps.hyperband_stopping)."""
    from sweeps import RunState, SweepRun
    from sweeps.hyperband_stopping import hyperband_stop_runs

    early = {"type": "hyperband", "eta": eta}
    early.update({k: v for k, v in (("max_iter", max_iter), ("min_iter", min_iter), ("s", s))
                  if v is not None})
    # sampledHistory: the field's alias (under pydantic 2, sweeps 0.2.0 drops a history= keyword).
    run = SweepRun(name="r", state=RunState.running, sampledHistory=[{"loss": 1.0}] * 3)
    hyperband_stop_runs([run], {"method": "random", "metric": {"name": "loss"},
                                "early_terminate": early, "parameters": {"a": {"values": [1]}}})
    return run.early_terminate_info["bands"]


@pytest.mark.parametrize("max_iter,s,eta", [(27, 3, 2), (27, 2, 3), (81, 4, 3), (100, 3, 2.5),
                                            (10, 5, 1.5)])
def test_hyperband_brackets_round_as_wandb_does(max_iter, s, eta):
    ours = Hyperband(max_iter=max_iter, s=s, eta=eta).brackets(10_000)
    # W&B may list a band twice (10 / 1.5^k truncates to 1 twice); an epoch is judged once.
    assert ours == sorted(set(_wandb_bands(max_iter=max_iter, s=s, eta=eta)))
    if (max_iter, s, eta) == (27, 3, 2):
        assert ours == [3, 6, 13]  # we used to round to [3, 7, 14]


@pytest.mark.parametrize("min_iter,eta", [(1, 3), (2, 1.5), (3, 2.5)])
def test_hyperband_min_iter_brackets_round_as_wandb_does(min_iter, eta):
    ours = Hyperband(min_iter=min_iter, eta=eta).brackets(500)
    assert ours == [b for b in _wandb_bands(min_iter=min_iter, eta=eta) if b <= 500]


def test_hyperband_s_may_be_a_non_integer_and_strict_is_read():
    base = {"method": "random", "metric": {"name": "Top1", "goal": "maximize"},
            "parameters": {"a": {"values": [1, 2]}}}
    config = load_sweep({**base, "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2.5}})
    assert config.early_terminate.s == 2.5 and config.early_terminate.brackets(27) == [3, 9]
    assert config.early_terminate.strict is False  # W&B's default
    strict = load_sweep({**base, "early_terminate": {"type": "hyperband", "min_iter": 2,
                                                     "eta": 2, "strict": True}})
    assert strict.early_terminate.strict is True


def test_grid_sweep_without_metric_runs_every_point(tmp_path):
    config = load_sweep(REPO / "tests" / "data" / "wandb_sweeps" / "sweeps_boolean_grid.yaml")
    assert config.objectives == []
    study = open_study(config, open_storage(tmp_path), "nometric", seed=0)
    records = SweepRunner(config, study, lambda c: TrialOutcome("ok", {"Latency": 1.0}),
                          tmp_path, n_trials=100).run()
    points = {(r.params["optimizer"], r.params["flag1"], r.params["flag2"]) for r in records}
    assert len(records) == 8 and len(points) == 8
    assert best_trials(config, records) == []  # nothing to rank by


def _sweep_with(name: str, spec: dict) -> dict:
    return {"method": "random", "metric": {"name": "Latency"},
            "parameters": {name: spec, "filter_pruner_70_desired_sparsity": {"min": 0.1, "max": 0.5}}}


@pytest.mark.parametrize("name,spec,message", [
    ("lr", {"distribution": "normal", "mu": 0.01, "sigma": 0.01}, "lr=-0.0"),
    ("filter_pruner_60_desired_sparsity", {"distribution": "normal", "mu": 0.5, "sigma": 0.1},
     "filter_pruner_60_desired_sparsity=-0.0"),
])
def test_unbounded_distribution_leaving_the_valid_range_is_refused_at_load(name, spec, message):
    config = load_sweep(_sweep_with(name, spec))
    with pytest.raises(SweepError) as info:
        check_mapping(config.parameters, RESNET56)
    text = str(info.value)
    assert message in text and f"parameters.{name} is normal, which reaches that value" in text
    assert "\n" not in text


def test_unbounded_distribution_inside_the_valid_range_is_accepted():
    # A log-normal lr never goes negative; a beta sparsity stays inside (0, 1).
    config = load_sweep(_sweep_with("lr", {"distribution": "log_normal", "mu": -4.6, "sigma": 0.5}))
    check_mapping(config.parameters, RESNET56)
    config = load_sweep(_sweep_with("filter_pruner_60_desired_sparsity",
                                    {"distribution": "beta", "a": 2, "b": 5}))
    check_mapping(config.parameters, RESNET56)


def test_nested_parameters_are_refused_with_a_line_saying_to_flatten():
    data = _sweep_with("filter_pruner_60", {"parameters": {"desired_sparsity": {"min": 0.1, "max": 0.5}}})
    assert wandb_violations(data) == []  # W&B accepts nested parameters; we do not map them
    with pytest.raises(SweepError, match="flatten it to <instance>_<key> names"):
        load_sweep(data)
