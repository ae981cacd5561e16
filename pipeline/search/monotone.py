"""What the GP may assume about pruning: more sparsity never buys back accuracy or speed.

Pruning more filters of the same layers leaves a pruned model that is no more accurate and no
slower. Two consequences, both for points that set the non-sparsity parameters alike:

- once a trial missed an accuracy floor, every point that prunes each group at least as much
  misses it too. Without this, a GP with a handful of trials keeps proposing such points, because
  they promise the lowest latency and its constraint model has seen little there: on the ResNet56
  rapid sweep one model-based trial in six (benchmarks/search_efficiency.py);
- once a trial met every constraint, a point that prunes each group no more cannot beat its
  latency (or throughput, MACs, parameters), so it cannot improve on the best.

``MonotoneGPSampler`` is Optuna's GPSampler whose acquisition function is pushed far down on the
points such trials rule out. Only searched sparsities (``*_desired_sparsity``,
``*_final_sparsity``) are treated as monotone, and only metrics that move one known way with
sparsity (accuracy down, latency down, throughput up) rule anything out: constraints for the
first rule, a single objective for the second (with several, a slower point may still be more
accurate, so it may join the Pareto front). The same wrapper can also weight the probability of
meeting the constraints in constrained EI (``feasibility_weight``; why: engine.FEASIBILITY_WEIGHT),
since an accuracy cliff is what lures the GP past the floor.

It reaches into Optuna's GP module (``optuna._gp``, which Optuna documents as overridable but not
stable), hence the ``optuna>=5,<6`` pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import optuna
import torch
from optuna._gp.acqf import BaseAcquisitionFunc, LogCEI
from optuna._gp.search_space import SearchSpace as GPSearchSpace
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from .config import Constraint

#: Searched parameters that prune more as they grow.
SPARSITY_SUFFIXES = ("_desired_sparsity", "_final_sparsity")
#: How a metric moves as sparsity grows: -1 falls, +1 rises.
METRIC_TRENDS = {"Top1": -1, "Top5": -1, "Top1_torch": -1, "Top5_torch": -1,
                 "Latency": -1, "Total_Latency": -1, "Relative_Latency": -1, "macs": -1,
                 "params": -1, "Throughput": 1}
#: Subtracted from the (log) acquisition value of a ruled-out point: far below any real value.
_RULED_OUT = 1e6
_TOL = 1e-9


def is_sparsity(name: str) -> bool:
    return name.endswith(SPARSITY_SUFFIXES)


def violation_trend(constraint: Constraint) -> int:
    """+1 when the violation grows with sparsity, -1 when it shrinks, 0 when unknown."""
    trend = METRIC_TRENDS.get(constraint.metric, 0)
    return trend if constraint.op == "<=" else -trend


#: Metrics fixed by the architecture alone. An accuracy objective is left to the GP: fine-tuning
#: adds noise, and light pruning sometimes regularises a network into a slightly better one.
ARCHITECTURE_METRICS = ("Latency", "Total_Latency", "Relative_Latency", "Throughput", "macs", "params")


def improvement_trend(metric: str, goal: str) -> int:
    """+1 when more sparsity can only improve ``metric`` under ``goal``, -1 when only less can, 0 unknown."""
    trend = METRIC_TRENDS.get(metric, 0) if metric in ARCHITECTURE_METRICS else 0
    return -trend if goal == "minimize" else trend


@dataclass
class RuledOut:
    """Normalized points of trials; a candidate is ruled out when it goes past one of them."""

    sparse: np.ndarray  # bool per dimension: a searched sparsity
    above: np.ndarray   # rule out candidates at least this sparse
    below: np.ndarray   # rule out candidates at most this sparse

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """True where ``x`` (..., dim) is ruled out."""
        out = torch.zeros(x.shape[:-1], dtype=torch.bool)
        sparse = torch.from_numpy(self.sparse)
        for points, sign in ((self.above, 1.0), (self.below, -1.0)):
            if len(points):
                diff = (x.unsqueeze(-2) - torch.from_numpy(points)) * sign  # (..., n, dim)
                past = torch.where(sparse, diff >= -_TOL, diff.abs() <= _TOL).all(dim=-1)
                out |= past.any(dim=-1)
        return out


class _PriorAcquisition(BaseAcquisitionFunc):
    """``inner`` with ruled-out points pushed down and, for constrained EI, P(feasible) weighted."""

    def __init__(self, inner: BaseAcquisitionFunc, ruled_out: RuledOut | None,
                 feasibility_weight: float) -> None:
        self._inner = inner
        self._ruled_out = ruled_out
        self._weight = feasibility_weight
        super().__init__(inner.length_scales, inner.search_space)

    def eval_acqf(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self._inner, LogCEI) and self._weight != 1:
            # log EI + weight * log P(feasible): LogCEI's own terms (Optuna 5), reweighted.
            value = self._inner._acqf.eval_acqf(x) + self._weight * sum(
                c.eval_acqf(x) for c in self._inner._constraints_acqf_list)
        else:
            value = self._inner.eval_acqf(x)
        if self._ruled_out is None:
            return value
        return value - _RULED_OUT * self._ruled_out.mask(x.detach()).to(value.dtype)


class MonotoneGPSampler(optuna.samplers.GPSampler):
    """GPSampler that never proposes a point its trials have ruled out (module docstring).

    ``trends`` maps a constraint's key (as the engine sets it with ``Trial.set_constraint``) to
    ``violation_trend``; constraints not named are not used. ``objective_trend`` is
    ``improvement_trend`` of the single objective (0: unknown, or several objectives).
    ``feasibility_weight`` raises the probability of meeting the constraints to that power in
    constrained EI (one objective, one worker; 1: Optuna's own).
    """

    def __init__(self, *, trends: dict[str, int], objective_trend: int = 0,
                 feasibility_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._trends = {k: t for k, t in trends.items() if t}
        self._objective_trend = objective_trend
        self._feasibility_weight = feasibility_weight
        self._ruled_out: RuledOut | None = None

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._ruled_out = self._ruled_out_points(study, search_space)
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            self._ruled_out = None

    def _optimize_acqf(self, acqf: BaseAcquisitionFunc, best_params: np.ndarray | None) -> np.ndarray:
        if self._ruled_out is not None or self._feasibility_weight != 1:
            acqf = _PriorAcquisition(acqf, self._ruled_out, self._feasibility_weight)
        return super()._optimize_acqf(acqf, best_params)

    def _ruled_out_points(self, study: optuna.Study,
                       search_space: dict[str, BaseDistribution]) -> RuledOut | None:
        sparse = np.array([is_sparsity(name) for name in search_space])
        if not (self._trends or self._objective_trend) or not sparse.any():
            return None
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # A feasible trial rules out the points on the side where the objective gets no better.
        beaten = [t for t in done if self._objective_trend and self._feasible(t)]
        above = [t for t in done if self._failed(t, +1)] + (beaten if self._objective_trend < 0 else [])
        below = [t for t in done if self._failed(t, -1)] + (beaten if self._objective_trend > 0 else [])
        space = GPSearchSpace(search_space)
        return RuledOut(sparse, _normalized(space, above), _normalized(space, below))

    def _failed(self, trial: FrozenTrial, trend: int) -> bool:
        constraints = trial.constraints or {}
        return any(self._trends.get(key) == trend and value > 0 for key, value in constraints.items())

    @staticmethod
    def _feasible(trial: FrozenTrial) -> bool:
        return all(value <= 0 for value in (trial.constraints or {}).values())


def _normalized(space: GPSearchSpace, trials: Sequence[FrozenTrial]) -> np.ndarray:
    if not trials:
        return np.empty((0, space.dim))
    return space.get_normalized_params(list(trials))
