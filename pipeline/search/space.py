"""W&B parameter distributions as Optuna suggestions.

Distributions Optuna has natively (uniform, int, log, categorical) become one Optuna parameter of
the same name, so samplers model them directly. The others (normal, log-normal, beta, weighted
categorical, quantised log) draw a latent ``<name>~u`` uniform on (0, 1) and map it through the
inverse CDF: random sampling then follows W&B's distribution exactly, and TPE models the latent.
``q_uniform`` is Optuna's stepped float over ``min, min+q, ... <= max``: every grid value is
equally likely (W&B rounds a continuous draw, which gives the two ends half weight), and a
model-based sampler searches the grid instead of proposing two values that round alike.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any, Callable

import optuna
from scipy import stats

from .config import ParamSpec, SweepConfig

#: Suffix of the latent uniform behind a distribution Optuna lacks.
LATENT_SUFFIX = "~u"
_EPS = 1e-9
#: Distributions whose draws have no bound on at least one side.
UNBOUNDED = frozenset({"normal", "q_normal", "log_normal", "q_log_normal"})


def _quantise(value: float, q: float) -> float:
    """W&B's q_* rounding, with float noise removed (0.30000000000000004 → 0.3)."""
    return round(round(value / q) * q, 10)


def _q_top(spec: ParamSpec) -> float:
    """The largest ``min + k*q`` not above ``max``: the top of a q_uniform grid."""
    assert spec.min is not None and spec.max is not None
    return spec.min + math.floor((spec.max - spec.min) / spec.q + 1e-9) * spec.q


def _grid_values(spec: ParamSpec) -> list[Any]:
    if spec.distribution in ("categorical", "categorical_w_probabilities"):
        return list(spec.values)
    assert spec.min is not None and spec.max is not None
    if spec.distribution == "int_uniform":
        return list(range(int(spec.min), int(spec.max) + 1))
    count = round((_q_top(spec) - spec.min) / spec.q) + 1
    return [_quantise(spec.min + i * spec.q, spec.q) for i in range(count)]


def extreme_values(spec: ParamSpec) -> list[Any]:
    """The values at the ends of what ``SearchSpace`` can draw for ``spec`` (every value of a
    categorical). Unbounded distributions reach their latent's ends, ``(1e-9, 1 - 1e-9)``
    through the inverse CDF (about mean +- 6 sigma), so a load-time check of these values covers
    every trial."""
    if spec.constant:
        return [spec.value]
    if spec.values:
        return list(spec.values)
    if spec.distribution in _INVERSE_CDF:
        return [_INVERSE_CDF[spec.distribution](spec, u) for u in (_EPS, 1 - _EPS)]
    assert spec.min is not None and spec.max is not None
    if spec.distribution == "int_uniform":
        return [int(spec.min), int(spec.max)]
    if spec.distribution == "log_uniform":  # W&B's bounds are exponents of e
        return [math.exp(spec.min), math.exp(spec.max)]
    if spec.distribution in ("q_uniform", "q_log_uniform_values"):
        return [_quantise(spec.min, spec.q), _quantise(_q_top(spec) if spec.distribution ==
                                                       "q_uniform" else spec.max, spec.q)]
    return [spec.min, spec.max]


class SearchSpace:
    """The sweep's parameters; ``suggest(trial)`` returns one full parameter set."""

    def __init__(self, config: SweepConfig):
        self.config = config
        self.specs = config.searched

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sampled values of every searched parameter plus the sweep's constants."""
        params = dict(self.config.constants)
        for name, spec in self.specs.items():
            params[name] = self._suggest_one(trial, spec)
        return params

    def grid(self) -> dict[str, list[Any]]:
        """Values of each searched parameter for Optuna's GridSampler (method: grid)."""
        return {name: _grid_values(spec) for name, spec in self.specs.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def grid_points(self) -> list[dict[str, Any]]:
        grid = self.grid()
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]

    def _suggest_one(self, trial: optuna.trial.BaseTrial, spec: ParamSpec) -> Any:
        d, name = spec.distribution, spec.name
        if self.config.method == "grid":
            return trial.suggest_categorical(name, _grid_values(spec))
        if d == "categorical":
            return self._categorical(trial, spec)
        if d in _INVERSE_CDF:
            u = trial.suggest_float(name + LATENT_SUFFIX, _EPS, 1 - _EPS)
            return _INVERSE_CDF[d](spec, u)
        lo, hi = spec.min, spec.max
        assert lo is not None and hi is not None  # the config reader requires both for the rest
        if d == "int_uniform":
            return trial.suggest_int(name, int(lo), int(hi))
        if d == "uniform":
            return trial.suggest_float(name, lo, hi)
        if d in ("log_uniform_values", "inv_log_uniform_values"):
            # 1/X of a log-uniform X is log-uniform on the same range: one distribution serves both.
            return trial.suggest_float(name, lo, hi, log=True)
        if d == "log_uniform":
            return trial.suggest_float(name, math.exp(lo), math.exp(hi), log=True)
        if d == "q_uniform":
            # A stepped float, not a rounded continuous one: a model-based sampler then knows that
            # 0.31 and 0.29 are the same trial and searches the grid instead of proposing it twice.
            return _quantise(trial.suggest_float(name, lo, _q_top(spec), step=spec.q), spec.q)
        if d == "q_log_uniform_values":
            return _quantise(trial.suggest_float(name, lo, hi, log=True), spec.q)
        raise ValueError(f"parameters.{name}: unknown distribution {d!r}")  # refused by the config reader

    @staticmethod
    def _categorical(trial: optuna.trial.BaseTrial, spec: ParamSpec) -> Any:
        primitive = all(v is None or isinstance(v, (bool, int, float, str)) for v in spec.values)
        if primitive:
            return trial.suggest_categorical(spec.name, list(spec.values))
        index = trial.suggest_categorical(spec.name + "#index", list(range(len(spec.values))))
        return spec.values[index]


def _weighted_choice(spec: ParamSpec, u: float) -> Any:
    cumulative = list(itertools.accumulate(spec.probabilities))
    return spec.values[min(bisect.bisect_right(cumulative, u * cumulative[-1]), len(spec.values) - 1)]


_INVERSE_CDF: dict[str, Callable[[ParamSpec, float], Any]] = {
    "categorical_w_probabilities": _weighted_choice,
    "normal": lambda s, u: float(stats.norm.ppf(u, s.mu, s.sigma)),
    "q_normal": lambda s, u: _quantise(float(stats.norm.ppf(u, s.mu, s.sigma)), s.q),
    "log_normal": lambda s, u: math.exp(float(stats.norm.ppf(u, s.mu, s.sigma))),
    "q_log_normal": lambda s, u: _quantise(math.exp(float(stats.norm.ppf(u, s.mu, s.sigma))), s.q),
    "beta": lambda s, u: float(stats.beta.ppf(u, s.a, s.b)),
    "q_beta": lambda s, u: _quantise(float(stats.beta.ppf(u, s.a, s.b)), s.q),
}
