"""What the GP may assume about pruning: more sparsity never buys back accuracy or speed.

Pruning more filters of the same layers leaves a pruned model that is no more accurate and no
slower. Two consequences, both for points that set the non-sparsity parameters alike:

- once a trial missed an accuracy floor, every point that prunes each group at least as much
  misses it too. Without this, a GP with a handful of trials keeps proposing such points, because
  they promise the lowest latency and its constraint model has seen little there: on the ResNet56
  rapid sweep one model-based trial in six (benchmarks/search_efficiency.py);
- once a trial met every constraint, a point that prunes each group no more cannot beat its
  latency (or throughput, MACs, parameters), so it cannot improve on the best.

``MonotoneSampler`` wraps a sampler (Optuna's GPSampler) through the public ``BaseSampler``
interface: when the proposal is a point such trials rule out, it proposes instead the point
nearest to it that they do not (among random candidates, many of them the proposal with one
parameter redrawn). Only searched sparsities (``*_desired_sparsity``, ``*_final_sparsity``) are
treated as monotone, and only metrics that move one known way with sparsity (accuracy down,
latency down, throughput up) rule anything out: constraints for the first rule, a single
objective for the second (with several, a slower point may still be more accurate, so it may
join the Pareto front).

``constraint_keys`` is the feasibility weight: constrained EI adds log P(feasible) of each
constraint's own GP, so a constraint told ``weight`` times under as many keys counts that often.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from .config import Constraint

#: Searched parameters that prune more as they grow.
SPARSITY_SUFFIXES = ("_desired_sparsity", "_final_sparsity")
#: How a metric moves as sparsity grows: -1 falls, +1 rises.
METRIC_TRENDS = {"Top1": -1, "Top5": -1, "Top1_torch": -1, "Top5_torch": -1,
                 "Latency": -1, "Total_Latency": -1, "Relative_Latency": -1, "macs": -1,
                 "params": -1, "Throughput": 1, "Total_Latency_predicted": -1}
#: Candidates per parameter with only that parameter redrawn, and fully random ones.
LOCAL_CANDIDATES = 64
RANDOM_CANDIDATES = 512
_TOL = 1e-9


def is_sparsity(name: str) -> bool:
    return name.endswith(SPARSITY_SUFFIXES)


def violation_trend(constraint: Constraint) -> int:
    """+1 when the violation grows with sparsity, -1 when it shrinks, 0 when unknown."""
    trend = METRIC_TRENDS.get(constraint.metric, 0)
    return trend if constraint.op == "<=" else -trend


#: Metrics fixed by the architecture alone. An accuracy objective is left to the GP: fine-tuning
#: adds noise, and light pruning sometimes regularises a network into a slightly better one.
ARCHITECTURE_METRICS = ("Latency", "Total_Latency", "Relative_Latency", "Throughput", "macs", "params",
                        "Total_Latency_predicted")


def improvement_trend(metric: str, goal: str) -> int:
    """+1 when more sparsity can only improve ``metric`` under ``goal``, -1 when only less can, 0 unknown."""
    trend = METRIC_TRENDS.get(metric, 0) if metric in ARCHITECTURE_METRICS else 0
    return -trend if goal == "minimize" else trend


def constraint_keys(key: str, weight: int) -> list[str]:
    """The keys under which to tell one constraint (``Trial.set_constraint``) for ``weight``."""
    return [key] + [f"{key} (feasibility weight {i})" for i in range(2, weight + 1)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= _TOL
    return a == b


@dataclass
class RuledOut:
    """Parameters of trials; a point is ruled out when it goes past one of them."""

    sparse: set[str]  # the searched sparsities among the parameters
    above: list[dict[str, Any]] = field(default_factory=list)  # rule out points at least this sparse
    below: list[dict[str, Any]] = field(default_factory=list)  # rule out points at most this sparse

    def rules_out(self, params: dict[str, Any]) -> bool:
        return any(self._past(params, known, sign)
                   for known_list, sign in ((self.above, 1), (self.below, -1)) for known in known_list)

    def _past(self, params: dict[str, Any], known: dict[str, Any], sign: int) -> bool:
        if known.keys() != params.keys():
            return False
        return all(sign * (params[n] - known[n]) >= -_TOL if n in self.sparse else _same(params[n], known[n])
                   for n in params)


class MonotoneSampler(optuna.samplers.BaseSampler):
    """``inner`` (a GPSampler) that never proposes a point its trials have ruled out (module docstring).

    ``trends`` maps a constraint's key (as the engine sets it with ``Trial.set_constraint``) to
    ``violation_trend``; constraints not named are not used. ``objective_trend`` is
    ``improvement_trend`` of the single objective (0: unknown, or several objectives).
    ``feasibility_weight``: how many times the engine tells each constraint (``constraint_keys``).
    """

    def __init__(self, inner: optuna.samplers.BaseSampler, *, trends: dict[str, int],
                 objective_trend: int = 0, feasibility_weight: int = 1, seed: int | None = None) -> None:
        self.inner = inner
        self.trends = {k: t for k, t in trends.items() if t}
        self.objective_trend = objective_trend
        self.feasibility_weight = feasibility_weight
        self._candidates = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        proposal = self.inner.sample_relative(study, trial, search_space)
        if not proposal:
            return proposal
        ruled_out = self.ruled_out(study, search_space)
        if ruled_out is None or not ruled_out.rules_out(proposal):
            return proposal
        allowed = [c for c in self._draw(study, trial, search_space, proposal)
                   if not ruled_out.rules_out(c)]
        # Everything drawn ruled out (say, the least sparse point failed): the GP's proposal stands.
        return min(allowed, key=lambda c: _distance(search_space, proposal, c), default=proposal)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._candidates.reseed_rng()

    def ruled_out(self, study: optuna.Study,
                  search_space: dict[str, BaseDistribution]) -> RuledOut | None:
        """What the finished trials rule out in ``search_space`` (None: nothing can be)."""
        sparse = {name for name in search_space if is_sparsity(name)}
        if not (self.trends or self.objective_trend) or not sparse:
            return None
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if search_space.keys() <= t.params.keys()]
        # A feasible trial rules out the points on the side where the objective gets no better.
        beaten = [t for t in done if self.objective_trend and self._feasible(t)]
        above = [t for t in done if self._failed(t, +1)] + (beaten if self.objective_trend < 0 else [])
        below = [t for t in done if self._failed(t, -1)] + (beaten if self.objective_trend > 0 else [])
        return RuledOut(sparse, *([{n: t.params[n] for n in search_space} for t in trials]
                                  for trials in (above, below)))

    def _draw(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution],
              proposal: dict[str, Any]) -> list[dict[str, Any]]:
        """Candidates: the proposal with one parameter redrawn at random, and random points."""
        def draw(name: str) -> Any:
            return self._candidates.sample_independent(study, trial, name, search_space[name])

        local = [{**proposal, name: draw(name)} for name in search_space for _ in range(LOCAL_CANDIDATES)]
        return local + [{name: draw(name) for name in search_space} for _ in range(RANDOM_CANDIDATES)]

    def _failed(self, trial: FrozenTrial, trend: int) -> bool:
        return any(self.trends.get(key) == trend and value > 0 for key, value in trial.constraints.items())

    @staticmethod
    def _feasible(trial: FrozenTrial) -> bool:
        return all(value <= 0 for value in trial.constraints.values())


def _distance(search_space: dict[str, BaseDistribution], a: dict[str, Any], b: dict[str, Any]) -> float:
    """Squared distance with each parameter scaled to [0, 1] (log-scaled ones in log)."""
    total = 0.0
    for name, dist in search_space.items():
        if isinstance(dist, CategoricalDistribution):
            total += 0.0 if a[name] == b[name] else 1.0
            continue
        if not isinstance(dist, (FloatDistribution, IntDistribution)):
            raise TypeError(f"{name}: no distance for a {type(dist).__name__}")
        scale = math.log if dist.log else float
        low, high = scale(dist.low), scale(dist.high)
        total += ((scale(a[name]) - scale(b[name])) / ((high - low) or 1.0)) ** 2
    return total
