"""Sweep YAML loader (W&B schema + our extension) and the search space built from it."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml

from pipeline.errors import SweepError
from pipeline.search.config import load_sweep
from pipeline.search.space import SearchSpace

REPO = Path(__file__).resolve().parent.parent

FULL = """
name: every-feature
description: all W&B features at once
program: edgeprune
project: edgeprune-tests
entity: someone
method: bayes
run_cap: 12
metric: {name: Latency, goal: minimize, target: 2.5}
early_terminate: {type: hyperband, min_iter: 1, eta: 3, s: 2}
command: ["${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}",
          "${args_json}", "${args_no_boolean_flags}", "${args_json_file}", "${envvar:HOME}"]
parameters:
  const: {value: 3}
  cat: {values: [a, b, c]}
  cat_explicit: {distribution: categorical, values: [1, 2]}
  weighted: {values: [x, y], probabilities: [0.25, 0.75]}
  int_inferred: {min: 1, max: 4}
  int_explicit: {distribution: int_uniform, min: 2, max: 6}
  float_inferred: {min: 0.1, max: 0.9}
  uniform: {distribution: uniform, min: -1.0, max: 1.0}
  quniform: {distribution: q_uniform, min: 0.1, max: 0.9, q: 0.05}
  logu: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
  logu_exp: {distribution: log_uniform, min: -4.0, max: 0.0}
  qlogu: {distribution: q_log_uniform_values, min: 1, max: 64, q: 1}
  invlogu: {distribution: inv_log_uniform_values, min: 0.01, max: 1.0}
  normal: {distribution: normal, mu: 5.0, sigma: 2.0}
  qnormal: {distribution: q_normal, mu: 0, sigma: 1, q: 0.5}
  lognormal: {distribution: log_normal, mu: 0, sigma: 0.5}
  beta: {distribution: beta, a: 2, b: 5}
  edgeprune:
    value:
      metrics: [{name: Total_Latency, goal: minimize, target: 3.0}, {name: Top1, goal: maximize}]
      constraints: ["Top1 >= 80", "Total_Latency <= 4"]
      gate: {dominated: true}
      early_stop: median
      sampler: tpe
"""


def test_loader_accepts_every_wandb_feature():
    config = load_sweep(FULL)
    assert config.method == "bayes" and config.run_cap == 12 and config.project == "edgeprune-tests"
    assert [(o.name, o.goal) for o in config.objectives] == [("Total_Latency", "minimize"),
                                                             ("Top1", "maximize")]
    assert [str(c) for c in config.constraints] == ["Top1 >= 80", "Total_Latency <= 4"]
    # The gate's limit is the tightest of the latency objective's target and its constraint.
    assert (config.gate.metric, config.gate.limit, config.gate.dominated) == ("Total_Latency", 3.0, True)
    assert config.early_terminate.eta == 3 and config.early_stop_rule == "median"
    assert config.bayes_sampler == "tpe" and load_sweep(BASE).bayes_sampler == "gp"
    kinds = {n: p.distribution for n, p in config.parameters.items()}
    assert kinds["int_inferred"] == "int_uniform" and kinds["float_inferred"] == "uniform"
    assert kinds["weighted"] == "categorical_w_probabilities" and kinds["const"] == "constant"
    assert "edgeprune" not in config.constants and config.constants == {"const": 3}


def test_space_samples_inside_each_distribution():
    config = load_sweep(FULL)
    space = SearchSpace(config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    draws = []
    for _ in range(200):
        trial = study.ask()
        draws.append(space.suggest(trial))
        study.tell(trial, 0.0)
    col = {k: [d[k] for d in draws] for k in draws[0]}
    assert set(col["cat"]) == {"a", "b", "c"} and set(col["const"]) == {3}
    assert set(col["int_explicit"]) <= set(range(2, 7)) and all(isinstance(v, int) for v in col["int_inferred"])
    assert all(-1 <= v <= 1 for v in col["uniform"])
    assert all(math.isclose(v / 0.05, round(v / 0.05), abs_tol=1e-6) for v in col["quniform"])
    assert all(1e-4 <= v <= 0.1 for v in col["logu"])
    assert all(math.exp(-4) <= v <= 1 for v in col["logu_exp"])
    assert all(float(v).is_integer() and 1 <= v <= 64 for v in col["qlogu"])
    assert all(0 < v < 1 for v in col["beta"]) and all(v > 0 for v in col["lognormal"])
    # Weighted categorical follows its probabilities; normal its mean (loose bounds: 200 draws).
    assert 0.6 < col["weighted"].count("y") / 200 < 0.9
    assert 4.0 < sum(col["normal"]) / 200 < 6.0


def test_q_uniform_is_searched_as_a_stepped_float_on_its_grid():
    # A model-based sampler must see the grid: a continuous value rounded afterwards let the GP
    # propose 0.31 after 0.29, the same trial twice.
    config = load_sweep("""
method: bayes
metric: {name: Latency}
parameters:
  s: {distribution: q_uniform, min: 0.1, max: 0.92, q: 0.05}
""")
    space = SearchSpace(config)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0, n_startup_trials=2))
    for _ in range(6):
        trial = study.ask()
        value = space.suggest(trial)["s"]
        study.tell(trial, (value - 0.42) ** 2)
    grid = set(space.grid()["s"])
    assert max(grid) == 0.9 and len(grid) == 17
    for t in study.trials:
        assert t.distributions["s"].step == 0.05 and t.distributions["s"].high == pytest.approx(0.9)
        assert round(t.params["s"], 10) in grid


def test_grid_enumerates_values_int_and_q_ranges():
    config = load_sweep("""
method: grid
metric: {name: Latency}
parameters:
  a: {values: [x, y]}
  b: {min: 1, max: 3}
  c: {distribution: q_uniform, min: 0.2, max: 0.4, q: 0.1}
""")
    space = SearchSpace(config)
    assert space.grid() == {"a": ["x", "y"], "b": [1, 2, 3], "c": [0.2, 0.3, 0.4]}
    assert space.grid_size() == 18


def test_every_sweep_file_in_the_repo_loads():
    files = sorted((REPO / "sweeps").glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        config = load_sweep(path)
        assert (REPO / config.command_option("--schedule")).is_file()
        assert "${args}" in config.command
        # The file's first lines say what it asks.
        assert path.read_text().startswith("# ")


BASE = {"method": "random", "metric": {"name": "Latency"},
        "parameters": {"p_desired_sparsity": {"min": 0.1, "max": 0.9}}}


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return data


MALFORMED = [
    (_with(bogus=1), "bogus is not a W&B sweep key"),
    (_with(method="hyperopt"), "method is 'hyperopt'"),
    (_with(parameters__p_desired_sparsity={"min": 0.9, "max": 0.1}), "min 0.9 is not less than max 0.1"),
    # W&B refuses min == max (sweeps.config.schema.validate_min_max); we used to accept it.
    (_with(parameters__p_desired_sparsity={"min": 0.5, "max": 0.5}), "min 0.5 is not less than max 0.5"),
    (_with(parameters__p_desired_sparsity={"distribution": "gaussian", "mu": 0}),
     "distribution is 'gaussian'"),
    (_with(parameters__p_desired_sparsity={"distribution": "uniform", "min": 0.1}), "lacks max"),
    (_with(parameters__p_desired_sparsity={"values": [1, 2], "probabilities": [0.5, 0.6]}),
     "Probabilities [0.5, 0.6] do not sum to 1"),
    (_with(parameters__p_desired_sparsity={"distribution": "log_uniform_values", "min": 0, "max": 1}),
     "parameters.p_desired_sparsity.min: 0 is less than or equal to the minimum of 0.0"),
    (_with(parameters__p_desired_sparsity={"distribution": "q_uniform", "min": 0.1, "max": 0.9, "q": 0}),
     "parameters.p_desired_sparsity.q: 0 is less than or equal to the minimum of 0"),
    (_with(parameters__p_desired_sparsity={"min": 0.1, "max": 0.9, "step": 0.1}),
     "step does not belong to distribution uniform"),
    (_with(parameters__p_desired_sparsity={"distribution": "int_uniform", "min": 0.5, "max": 3}),
     "min is 0.5"),
    (_with(metric={"name": "Latency", "goal": "lowest"}), "metric.goal is 'lowest'"),
    (_with(metric={"name": "Latency", "direction": "min"}), "metric.direction is not a metric key"),
    (_with(early_terminate={"type": "median"}), "early_terminate.type is 'median'"),
    (_with(early_terminate={"type": "hyperband", "eta": 3}), "needs min_iter, or max_iter"),
    (_with(run_cap=0), "run_cap is 0"),
    (_with(command=["edgeprune", "${argz}"]), "unknown macro ${argz}"),
    (_with(parameters__edgeprune={"value": {"constraints": ["Top1 > = 80"]}}),
     "constraints[0] is 'Top1 > = 80'"),
    (_with(parameters__edgeprune={"value": {"objectives": []}}),
     "objectives is not an edgeprune extension key"),
    (_with(method="grid"), "a grid cannot enumerate"),
    (_with(parameters__edgeprune={"value": {"sampler": "cmaes"}}), "sampler is 'cmaes'"),
    (_with(parameters={}), "parameters is missing or empty"),
    ({"method": "bayes", "parameters": BASE["parameters"]}, "metric is missing"),
    (_with(early_terminate={"type": "hyperband", "min_iter": 1, "eta": 1}),
     "early_terminate.eta: 1 is less than or equal to the minimum of 1"),
    (_with(early_terminate={"type": "hyperband", "min_iter": 1, "strict": "yes"}),
     "early_terminate.strict is 'yes'"),
    (_with(parameters__p_desired_sparsity={"parameters": {"a": {"value": 1}}}),
     "is a nested parameter dictionary, which edgeprune does not map"),
]


@pytest.mark.parametrize("data,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_loader_rejects_malformed_sweep_with_its_own_message(data, message):
    with pytest.raises(SweepError) as info:
        load_sweep(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text and ": " in text.split(message, 1)[1]  # one line, with a fix after it


def test_malformed_messages_are_distinct():
    messages = set()
    for data, _ in MALFORMED:
        with pytest.raises(SweepError) as info:
            load_sweep(data)
        messages.add(str(info.value))
    assert len(messages) == len(MALFORMED)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: random\nparameters: [\n")
    with pytest.raises(SweepError, match="YAML syntax error"):
        load_sweep(bad)
