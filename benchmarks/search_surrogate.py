"""Samplers compared on a surrogate of measured rapid ResNet56 trials: minutes, not an hour.

search_efficiency.py measures every new architecture (6-8 s each; one sampler over 10 seeds takes
30-40 min on 2 cores), too slow to try sampler settings. This script fits a Gaussian process
(scikit-learn) to measured points, parameters -> (Top1_torch, Relative_Latency), answers a
measured point exactly and any other from the fit, and runs the same sweep as search_efficiency
(same space, floor, budget, samplers, summary figures) over it. Use it to choose what to measure
for real; quote the real benchmark, never this one, as the product's figures.

The points: benchmarks/data/rapid_resnet56_xeon.csv (654 architectures measured on a 2-core Intel
Xeon VM, 2026-11-29, on the validation split of the JPEG CIFAR-10 mini tree, about 10 points
below the lossless set) or the --history JSON that search_efficiency.py writes. On a held-out fifth of
the shipped points the fit's Top1 is off by 1.6 points on average and calls feasibility right 97%
of the time; its Relative_Latency is off by 0.010 (printed at each run).

    python benchmarks/search_surrogate.py --samplers gp,gp-plain,gp-deterministic --seeds 16
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from search_efficiency import (SAMPLERS, TARGET, add_run_arguments,  # noqa: E402
                               expected_trials, feasible_values, first_reaching,
                               oracle_trials, run)
from tqdm import tqdm  # noqa: E402

from pipeline.search.engine import TrialContext, TrialOutcome, bayes_sampler  # noqa: E402
from pipeline.status import TrialStatus  # noqa: E402

POINTS = Path(__file__).resolve().parent / "data" / "rapid_resnet56_xeon.csv"
METRIC = "Relative_Latency"
#: Besides search_efficiency's samplers: Optuna's GP without the pruning prior or the feasibility
#: weight, the default GP with only one of the two, the default GP told the objective is
#: deterministic (true of cached rapid trials, not of measured latency), and the default GP with
#: P(feasible) cubed instead of squared.
VARIANTS = {
    **SAMPLERS,
    "gp-plain": lambda seed, startup, config: optuna.samplers.GPSampler(
        seed=seed, n_startup_trials=startup),
    "gp-prior-only": lambda seed, startup, config: bayes_sampler(
        "gp", seed, startup, config.constraints, config.objectives, feasibility_weight=1),
    "gp-weight-only": lambda seed, startup, config: bayes_sampler("gp", seed, startup),
    "gp-deterministic": lambda seed, startup, config: bayes_sampler(
        "gp", seed, startup, config.constraints, config.objectives, deterministic_objective=True),
    "gp-cubed": lambda seed, startup, config: bayes_sampler(
        "gp", seed, startup, config.constraints, config.objectives, feasibility_weight=3),
}


def load_points(paths: list[Path]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Parameter names, X (points x parameters) and Y (points x [Top1_torch, metric])."""
    rows = []
    for path in paths:
        if path.suffix == ".csv":
            with path.open(newline="") as f:
                rows += [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        else:
            rows += [{**r["params"], "Top1_torch": r["Top1_torch"], METRIC: r[METRIC]}
                     for runs in json.loads(path.read_text()).values() for r in runs]
    names = sorted(k for k in rows[0] if k.endswith("_sparsity"))
    points = {tuple(round(float(r[n]), 4) for n in names): (r["Top1_torch"], r[METRIC]) for r in rows}
    return names, np.array(list(points)), np.array(list(points.values()))


class SurrogateTrial:
    """A trial function answering from the measured points, else from a GP fitted to them."""

    metric = METRIC

    def __init__(self, names: list[str], x: np.ndarray, y: np.ndarray):
        self.names = names
        self.measured = {tuple(p): tuple(v) for p, v in zip(x, y)}
        self.top1, self.latency = (_fit(x, y[:, i]) for i in range(2))
        self.floor_top1, self.ceiling_top1 = float(y[:, 0].min()), float(y[:, 0].max())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(Top1_torch, metric) per row of ``x``."""
        top1 = np.clip(self.top1.predict(x), self.floor_top1, self.ceiling_top1)
        return np.stack([top1, self.latency.predict(x)], axis=1)

    def __call__(self, context: TrialContext) -> TrialOutcome:
        point = tuple(round(float(context.params[n]), 4) for n in self.names)
        top1, latency = self.measured.get(point) or self.predict(np.array([point]))[0]
        return TrialOutcome(TrialStatus.OK, {"Top1_torch": float(top1), METRIC: float(latency)})


def _fit(x: np.ndarray, y: np.ndarray) -> GaussianProcessRegressor:
    kernel = ConstantKernel() * Matern(length_scale=[0.3] * x.shape[1], nu=2.5) + WhiteKernel(1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kernel bounds reached on some folds: harmless here
        return GaussianProcessRegressor(kernel, normalize_y=True).fit(x, y)


def held_out_error(names: list[str], x: np.ndarray, y: np.ndarray, floor: float) -> str:
    """The fit's error on a random fifth of the points, fitted on the rest."""
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[: len(x) // 5], order[len(x) // 5:]
    predicted = SurrogateTrial(names, x[train], y[train]).predict(x[test])
    error = np.abs(predicted - y[test]).mean(axis=0)
    agree = ((predicted[:, 0] >= floor) == (y[test, 0] >= floor)).mean()
    return (f"held-out fifth: Top1 off by {error[0]:.2f} points, feasibility right "
            f"{agree:.0%}, {METRIC} off by {error[1]:.4f}")


def summary(name: str, runs: list[list[float | None]], random_runs: list[list[float | None]],
            bests: list[float], trials: int) -> str:
    """One line: trials to each random run's best (``bests``), over random's own and its expected
    trials."""
    pooled = [v for r in random_runs for v in r]
    found = [first_reaching(r, b) or trials + 1 for r, b in zip(runs, bests)]
    own = [n / first_reaching(r, b) for n, r, b in zip(found, random_runs, bests)]
    expected = [n / expected_trials(pooled, b) for n, b in zip(found, bests)]
    best = [min((v for v in r if v is not None), default=float("nan")) for r in runs]
    feasible = sum(v is not None for r in runs for v in r)
    return (f"{name:>16}: / random's own trials median {statistics.median(own):.2f} (mean "
            f"{statistics.mean(own):.2f}); / random's expected median "
            f"{statistics.median(expected):.2f}; best median {statistics.median(best):.3f}; "
            f"feasible {feasible}/{trials * len(runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=Path, nargs="+", default=[POINTS],
                        help="Measured points: the shipped CSV, or search_efficiency --history JSON.")
    parser.add_argument("--samplers", default="gp,gp-plain,gp-deterministic",
                        help=f"Samplers to compare with random search, from {', '.join(VARIANTS)}.")
    # Seeds from 100: other random starts than the measured runs' (0-9), whose points the fit holds.
    add_run_arguments(parser, seeds=16, first_seed=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # gp-deterministic's flag is experimental in Optuna 5; one warning a run breaks the progress bar.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    names, x, y = load_points(args.points)
    print(f"{len(x)} measured points; {held_out_error(names, x, y, args.floor)}")
    trial_fn = SurrogateTrial(names, x, y)
    SAMPLERS.update(VARIANTS)  # search_efficiency.run looks samplers up there
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for name in ["random"] + args.samplers.split(","):
            started = time.time()
            results[name] = [
                feasible_values(run(name, seed, args.trials, args.floor, trial_fn,
                                    Path(out) / name, args.startup), METRIC, args.floor)
                for seed in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc=name)]
            print(f"{name}: {time.time() - started:.0f} s", flush=True)
    print(f"\nSurrogate of rapid ResNet56 trials (not measured), {args.seeds} seeds x "
          f"{args.trials} trials, feasible: Top1 >= {args.floor}% (JPEG mini tree's validation split); "
          f"trials each sampler needed to reach each random run's best {METRIC}:")
    bests = [min(v for v in r if v is not None) for r in results["random"]]
    for name, runs in results.items():
        if name != "random":
            print(summary(name, runs, results["random"], bests, args.trials))
    floor = [oracle_trials(r, b, args.startup) / first_reaching(r, b)
             for r, b in zip(results["random"], bests)]
    print(f"floor of the per-seed reading (an oracle proposing random's best after the "
          f"{args.startup} start-up trials): median {statistics.median(floor):.2f}, under "
          f"{TARGET:.2f} in {sum(f <= TARGET for f in floor)} of {len(floor)} seeds")


if __name__ == "__main__":
    main()
