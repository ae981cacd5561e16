"""Numbers behind a sweep report, computed from plain ``TrialRecord`` lists.

Each function does one analysis (Pareto front, correlations, equal-width binning, importance,
best-so-far, counts) and returns small dataclasses that turn into JSON, so the plots, the HTML page
and scripts all read the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.extras import require
from pipeline.messages import TrialRecord
from pipeline.status import TrialStatus

#: Metrics where larger is better; every other metric is minimised (latencies, MACs, size).
MAXIMISED_METRICS = frozenset({"Top1", "Top5", "Top1_torch", "Top5_torch", "Top1_before",
                               "Top5_before", "Throughput"})

#: Trial statuses the report counts, in TrialStatus's order (PENDING is a result.json's only:
#: a sweep records a trial whose result did not come as failed).
COUNTED_STATUSES = tuple(status.value for status in TrialStatus if status is not TrialStatus.PENDING)


def is_maximised(metric: str) -> bool:
    """True when a larger value of ``metric`` is better."""
    return metric in MAXIMISED_METRICS


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_value(trial: TrialRecord, metric: str) -> float | None:
    """The trial's finite value of ``metric``, or None when absent or not a number."""
    return _finite(trial.metrics.get(metric))


def base_model(trial: TrialRecord) -> str:
    """The pretrained network the trial pruned: its ``model`` parameter when the sweep searched
    it, else the ``model`` its run recorded ('' for records from before either existed)."""
    return str(trial.params.get("model") or trial.metrics.get("model") or "")


def describe(trial: TrialRecord) -> str:
    """One line naming the trial's model and parameters: ``resnet32_cifar, filter_pruner_stage1
    40%, precision=int8``; sparsities as percentages."""
    parts = [base_model(trial) or "model not recorded"]
    for name, value in sorted(trial.params.items()):
        if name == "model":
            continue
        number = _finite(value)
        parts.append(f"{name.removesuffix('_desired_sparsity')} {number:.0%}"
                     if "sparsity" in name and number is not None else f"{name}={value}")
    return ", ".join(parts)


def numeric_params(trials: Sequence[TrialRecord]) -> list[str]:
    """Parameter names whose values are numbers in every trial that has them and vary across trials."""
    names: dict[str, set[float]] = {}
    rejected: set[str] = set()
    for trial in trials:
        for name, value in trial.params.items():
            number = _finite(value)
            if number is None:
                rejected.add(name)
            else:
                names.setdefault(name, set()).add(number)
    return sorted(n for n, values in names.items() if n not in rejected and len(values) > 1)


def varying_params(trials: Sequence[TrialRecord]) -> list[str]:
    """Every parameter (numeric or categorical) that takes more than one value across trials."""
    values: dict[str, set[str]] = {}
    for trial in trials:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(n for n, seen in values.items() if len(seen) > 1)


def sparsity_params(trials: Sequence[TrialRecord]) -> list[str]:
    """Numeric parameters that set a pruner's sparsity (``<instance>_desired_sparsity`` and kin)."""
    return [name for name in numeric_params(trials) if "sparsity" in name]


def _pairs(trials: Iterable[TrialRecord], param: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Aligned arrays of (param value, metric value) over trials that have both as finite numbers."""
    xs, ys = [], []
    for trial in trials:
        x, y = _finite(trial.params.get(param)), metric_value(trial, metric)
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


# --------------------------------------------------------------------------- Pareto front


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when ``x`` is minimised and ``y`` maximised.

    A point dominates another when it is no worse in both and better in one. Returned in order of
    rising ``x``; of exact duplicates only the first index is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best_y = -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


@dataclass
class ParetoPoint:
    number: int
    latency: float
    accuracy: float
    status: str
    on_front: bool
    #: The pretrained network the trial pruned (``base_model``).
    model: str = ""


@dataclass
class Pareto:
    """Accuracy against latency over every trial that has both."""

    latency_metric: str
    accuracy_metric: str
    points: list[ParetoPoint] = field(default_factory=list)
    #: Names of the references (unpruned, hand-picked) that lie on the front: they take part in
    #: it, so a trial one of them dominates is not on it.
    references_on_front: list[str] = field(default_factory=list)

    @property
    def front(self) -> list[ParetoPoint]:
        return sorted((p for p in self.points if p.on_front), key=lambda p: p.latency)


def pareto(trials: Sequence[TrialRecord], latency_metric: str = "Total_Latency",
           accuracy_metric: str = "Top1",
           references: dict[str, tuple[float, float]] | None = None) -> Pareto:
    """Every trial with both metrics as a point, flagged when it lies on the front; the front is
    taken over the trials and ``references`` (name -> (latency, accuracy)) together."""
    usable: list[tuple[TrialRecord, tuple[float, float]]] = []
    for t in trials:
        x, y = metric_value(t, latency_metric), metric_value(t, accuracy_metric)
        if x is not None and y is not None:
            usable.append((t, (x, y)))
    named = sorted((references or {}).items())
    # References come first: a trial that merely ties a reference is not on the front.
    front = set(pareto_front([xy for _, xy in named] + [xy for _, xy in usable]))
    points = [ParetoPoint(t.number, x, y, t.status, len(named) + i in front, base_model(t))
              for i, (t, (x, y)) in enumerate(usable)]
    return Pareto(latency_metric, accuracy_metric, points,
                  [name for i, (name, _) in enumerate(named) if i in front])


# --------------------------------------------------------------------------- correlations


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r, or None with fewer than 3 pairs or a constant side (r is undefined)."""
    if len(x) < 3:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    if denominator == 0.0:
        return None
    return float((dx * dy).sum() / denominator)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as Spearman's rho needs)."""
    from scipy.stats import rankdata

    return rankdata(values, method="average")


@dataclass
class Correlation:
    param: str
    metric: str
    pearson: float | None
    spearman: float | None
    n: int


def correlations(trials: Sequence[TrialRecord], params: Sequence[str],
                 metrics: Sequence[str]) -> list[Correlation]:
    """Pearson and Spearman correlation of each numeric parameter with each metric.

    Each pair uses the trials that have both values; Spearman is Pearson's r of average ranks.
    """
    table = []
    for param in params:
        for metric in metrics:
            x, y = _pairs(trials, param, metric)
            spearman = _pearson(_average_ranks(x), _average_ranks(y)) if len(x) >= 3 else None
            table.append(Correlation(param, metric, _pearson(x, y), spearman, len(x)))
    return table


# --------------------------------------------------------------------------- binning


@dataclass
class Bin:
    low: float
    high: float
    count: int
    mean: float


def equal_width_bins(x: Iterable[float], y: Iterable[float], width: float) -> list[Bin]:
    """Mean of ``y`` in each equal-width bin ``[k*width, (k+1)*width)`` of ``x`` that holds a value.

    Bins sit on multiples of ``width`` (0.00-0.02, 0.02-0.04, ...) so that two sweeps bin alike; a
    tiny tolerance keeps a value such as 0.06 (stored as 0.0599999...) in the bin it names.
    """
    if width <= 0:
        raise ValueError(f"bin width must be positive, got {width}")
    groups: dict[int, list[float]] = {}
    for xi, yi in zip(x, y):
        groups.setdefault(math.floor(xi / width + 1e-9), []).append(yi)
    return [Bin(round(k * width, 12), round((k + 1) * width, 12), len(v), float(np.mean(v)))
            for k, v in sorted(groups.items())]


def binned_metric(trials: Sequence[TrialRecord], params: Sequence[str], metric: str,
                  width: float) -> dict[str, list[Bin]]:
    """For each parameter, the mean of ``metric`` per equal-width bin of that parameter."""
    result = {}
    for param in params:
        x, y = _pairs(trials, param, metric)
        if len(x):
            result[param] = equal_width_bins(x, y, width)
    return result


# --------------------------------------------------------------------------- importance


@dataclass
class Importance:
    """Random-forest importance of each parameter for one metric (values sum to 1)."""

    metric: str
    estimator: str
    n: int
    values: dict[str, float]


IMPORTANCE_ESTIMATOR = ("sklearn RandomForestRegressor(n_estimators=100, random_state=0), "
                        "impurity-based feature_importances_ (mean decrease in impurity), as W&B's "
                        "parameter importance panel; categorical parameters ordinal-coded")


def _encode(values: list[Any]) -> list[float]:
    """Numbers stay; anything else becomes its index among the sorted distinct values."""
    if all(_finite(v) is not None for v in values):
        return [float(v) for v in values]
    codes = {v: i for i, v in enumerate(sorted({repr(v) for v in values}))}
    return [float(codes[repr(v)]) for v in values]


def importance(trials: Sequence[TrialRecord], params: Sequence[str], metric: str,
               seed: int = 0) -> Importance | None:
    """Fit a random forest from the parameters to ``metric`` and return its feature importances.

    Uses the trials that have the metric and every parameter; None when fewer than 3 such trials,
    no parameter, or a constant metric (nothing to explain).
    """
    RandomForestRegressor = require("sklearn.ensemble").RandomForestRegressor

    usable = [t for t in trials
              if metric_value(t, metric) is not None and all(p in t.params for p in params)]
    y = np.asarray([metric_value(t, metric) for t in usable], dtype=float)
    if not params or len(usable) < 3 or np.ptp(y) == 0.0:
        return None
    columns = [_encode([t.params[p] for t in usable]) for p in params]
    x = np.asarray(columns, dtype=float).T
    forest = RandomForestRegressor(n_estimators=100, random_state=seed)
    forest.fit(x, y)
    values = {p: float(v) for p, v in zip(params, forest.feature_importances_)}
    return Importance(metric, IMPORTANCE_ESTIMATOR, len(usable), values)


# --------------------------------------------------------------------------- progress


@dataclass
class ProgressPoint:
    number: int
    value: float | None
    best: float | None
    compute_s: float
    cumulative_compute_s: float


def best_so_far(trials: Sequence[TrialRecord], metric: str) -> list[ProgressPoint]:
    """Per trial (in trial-number order): its value, the best value so far, and cumulative compute."""
    better = max if is_maximised(metric) else min
    best: float | None = None
    total = 0.0
    points = []
    for trial in sorted(trials, key=lambda t: t.number):
        value = metric_value(trial, metric)
        if value is not None:
            best = value if best is None else better(best, value)
        total += trial.compute_s
        points.append(ProgressPoint(trial.number, value, best, trial.compute_s, total))
    return points


def status_counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    """How many trials ended in each status (every known status listed, zeros included)."""
    counts = {status: 0 for status in COUNTED_STATUSES}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    counts["total"] = len(trials)
    return counts


def best_trial(trials: Sequence[TrialRecord], metric: str, accuracy_metric: str = "Top1",
               min_accuracy: float | None = None) -> TrialRecord | None:
    """The trial with the best ``metric`` among those with ``accuracy_metric >= min_accuracy``."""
    sign = -1.0 if is_maximised(metric) else 1.0
    scored: list[tuple[float, TrialRecord]] = []
    for t in trials:
        value, accuracy = metric_value(t, metric), metric_value(t, accuracy_metric)
        if value is not None and (min_accuracy is None or (accuracy is not None and accuracy >= min_accuracy)):
            scored.append((sign * value, t))
    if not scored:
        return None
    return min(scored, key=lambda s: (s[0], s[1].number))[1]


def to_jsonable(value: Any) -> Any:
    """Dataclasses (and lists/dicts of them) as plain JSON values; NaN becomes None."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
