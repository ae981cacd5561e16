"""Model-based sampler against random search on rapid (epochs 0) ResNet56 filter-pruning trials.

Same space as sweeps/01_rapid_latency.yaml (four sparsities, q 0.05), same budget per sampler,
plus an accuracy floor so the minimum is not simply "prune everything": a trial is feasible when
the pruned model's PyTorch Top1 on a fixed validation subset is at least --floor. The objective is
--metric: Relative_Latency by default, the pruned model's request time over the unpruned model's,
the two timed in alternating windows (pipeline/measure/relative.py): a shared VM's slow periods
last seconds to a minute and move Total_Latency (the quiet median) by up to 1.6x, but move both
models alike. A noisy objective rewards the lucky, not the better sampler. Total_Latency and
Latency (the sum of per-layer mean times) can be chosen instead; --quiet-wait then lets each
measurement first wait for a slow period to end, where the reference kernel sees them.

Without retraining, equal architectures are equal models (L1 ranking is deterministic), so each
architecture is pruned, evaluated and measured once (again when the measurement was disturbed:
relative spread over MAX_SPREAD): results are cached by architecture signature
in a JSON file (--cache), which every sampler and seed shares, and the signature of each set of
parameters beside it (so a known trial is not even pruned again). That makes the comparison fair
(one fixed objective) and affordable, and a second run of the script nearly free.

Printed: for each seed, the trial at which random search reached its best feasible latency, and
the trial at which each model-based sampler first got at least as low. The target (a third or
less of random search's trials) is read against random search's *expected* trials to that
latency, 1 / the share of its trials, pooled over seeds, that reach it: the trial at which one
random run found its best is a biased count (the threshold is chosen as that run's own best, so
the run reaches it within the budget by construction, at a trial uniform over the budget). The
per-seed ratio is printed too, with its floor: an oracle that proposes random's best right after
the start-up trials it shares with random search.
Data: the shared lossless CIFAR-10 binary mini set unless --data (the floor was chosen on the JPEG
mini tree, where Top1 is about 10 points lower: re-check it before relying on new figures).

    python benchmarks/search_efficiency.py --trials 30 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _resnet56 import export, pretrained_resnet56  # noqa: E402

from pipeline.flow import RunConfig, produce  # noqa: E402
from pipeline.measure import measure  # noqa: E402
from pipeline.measure.options import MeasureOptions  # noqa: E402
from pipeline.messages import Target, TrialRecord  # noqa: E402
from pipeline.status import TrialStatus  # noqa: E402
from pipeline.search.config import load_sweep  # noqa: E402
from pipeline.search.engine import (STARTUP_TRIALS, SweepRunner, TrialContext,  # noqa: E402
                                     TrialOutcome, bayes_sampler, open_study)
from pipeline.search.gate import FileLatencyCache, cache_key  # noqa: E402
from pipeline.search.storage import open_storage  # noqa: E402
from pipeline.search.trials import run_config_for  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

SWEEP = REPO / "sweeps" / "01_rapid_latency.yaml"
#: Exactly the samplers `edgeprune sweep` uses: gp for method: bayes (tpe with `sampler: tpe`);
#: --startup changes their random start-up trials.
SAMPLERS = {
    "gp": lambda seed, startup, config: bayes_sampler("gp", seed, startup, config.constraints,
                                                      config.objectives),
    "tpe": lambda seed, startup, config: bayes_sampler("tpe", seed, startup),
    "random": lambda seed, startup, config: optuna.samplers.RandomSampler(seed=seed),
}


#: The model-based sampler should need at most this share of random search's expected trials.
TARGET = 1 / 3

#: A Relative_Latency whose interquartile range is over this share of it was disturbed (the
#: test suite sharing the cores, a slow spell of the VM read 0.65 for a 0.80 model): measure again.
MAX_SPREAD = 0.1


class CachedRapidTrial:
    """Prune + evaluate + measure one architecture, once; later trials of it read the cache."""

    def __init__(self, settings: Settings, cache: FileLatencyCache, val_subset: int,
                 metric: str = "Relative_Latency", quiet_wait: float = 0.0,
                 reference: Path | None = None):
        self.settings = settings
        self.metric = metric
        self.cache = cache
        self.base = RunConfig(schedule=REPO / "schedules" / "resnet56_filter_rank.yaml",
                              model="resnet56_cifar", eval_split="val", eval_subset=val_subset,
                              torch_eval=True)
        # Slow periods of a shared VM last up to a minute and made one architecture in ten look
        # 40-50% slower than it is, which misleads a model-based sampler far more than random
        # search (the noise is one-sided, and random search only keeps a minimum). So: 20
        # alternating windows of 50 requests against the unpruned model (Relative_Latency), and
        # about 12 quiet-median windows of 50 requests for Total_Latency.
        self.options = MeasureOptions(min_iters=600, min_time_s=0.6, quiet_window=50,
                                      throughput=False, profile_repeats=20, quiet_wait_s=quiet_wait,
                                      reference_onnx=str(reference) if reference else None,
                                      relative_polls=20, relative_window=50)
        # Parameters -> architecture signature, so a later run skips pruning a known trial.
        self.signatures = FileLatencyCache(cache.path.with_suffix(".params.json"))
        self.measured = 0

    def __call__(self, context: TrialContext) -> TrialOutcome:
        params_key = json.dumps(context.params, sort_keys=True)
        known = self.signatures.get(params_key)
        metrics = self.cache.get(known["key"]) if known else None
        if metrics is not None and self.metric in metrics and _spread(metrics) <= MAX_SPREAD:
            return TrialOutcome(TrialStatus.OK, dict(metrics))
        config = run_config_for(self.base, context.params)
        with tempfile.TemporaryDirectory() as scratch:
            # Pruning alone fixes the architecture; its signature is the cache key.
            produced = produce(config, self.settings, Path(scratch))
            key = cache_key(produced.facts, Target())
            self.signatures.put(params_key, {"key": key})
            metrics = self.cache.get(key)
            if metrics is None or self.metric not in metrics or _spread(metrics) > MAX_SPREAD:
                measured = self._steadiest(produced.onnx_path)
                metrics = {"Top1_torch": produced.metrics["Top1_torch"],
                           **{name: measured.get(name) for name in (
                               "Latency", "Total_Latency", "machine_slowdown", "Relative_Latency",
                               "relative_spread")}}
                self.cache.put(key, metrics)
                self.measured += 1
        return TrialOutcome(TrialStatus.OK, dict(metrics))


    def _steadiest(self, onnx_path: Path) -> dict:
        """Measured again (three tries at most) while the relative spread is over MAX_SPREAD."""
        tries = []
        for _ in range(3):
            tries.append(measure(onnx_path, Target(), options=self.options).to_metrics())
            if _spread(tries[-1]) <= MAX_SPREAD:
                break
        return min(tries, key=_spread)


def _spread(metrics: dict) -> float:
    """Relative_Latency's spread, 0 where the figure was not taken (no reference model)."""
    return metrics.get("relative_spread") or 0.0


def first_reaching(values: list[float | None], threshold: float) -> int | None:
    """1-based trial at which a feasible value first got to ``threshold`` or below."""
    for i, v in enumerate(values, start=1):
        if v is not None and v <= threshold + 1e-12:
            return i
    return None


def oracle_trials(random_values: list[float | None], best: float, startup: int) -> int:
    """Trials to ``best`` of a sampler that shares random search's ``startup`` trials (same seed)
    and then proposes random's best at once: the least any model-based sampler can need."""
    return min(first_reaching(random_values, best), startup + 1)


def expected_trials(pooled: list[float | None], threshold: float) -> float:
    """Random search's expected trials to reach ``threshold``: 1 / the share of its pooled trials
    (None: infeasible) that reach it."""
    return len(pooled) / sum(v is not None and v <= threshold + 1e-12 for v in pooled)


def run(sampler: str, seed: int, trials: int, floor: float, trial_fn: CachedRapidTrial,
        out: Path, startup: int = STARTUP_TRIALS) -> list[TrialRecord]:
    """The trial records of one sampler run."""
    raw = yaml.safe_load(SWEEP.read_text())
    raw["metric"]["name"] = trial_fn.metric
    raw["parameters"]["edgeprune"] = {"value": {"constraints": [f"Top1_torch >= {floor}"]}}
    config = load_sweep(raw)
    study = open_study(config, open_storage(out / f"{sampler}-{seed}"), f"{sampler}-{seed}",
                       sampler=SAMPLERS[sampler](seed, startup, config))
    return SweepRunner(config, study, trial_fn, out, trials).run()


def feasible_values(records: list[TrialRecord], metric: str, floor: float) -> list[float | None]:
    """The objective per trial, None where the trial missed the accuracy floor."""
    return [r.metrics[metric] if r.metrics["Top1_torch"] >= floor else None for r in records]


def history_rows(records: list[TrialRecord], metric: str) -> list[dict]:
    return [{"params": r.params, "Top1_torch": r.metrics["Top1_torch"], metric: r.metrics[metric]}
            for r in records]


def add_run_arguments(parser: argparse.ArgumentParser, seeds: int, first_seed: int) -> None:
    """The flags this script shares with search_surrogate.py: budget, seeds, floor, start-up."""
    parser.add_argument("--trials", type=int, default=30, help="Budget per sampler and seed.")
    parser.add_argument("--seeds", type=int, default=seeds, help="Independent runs per sampler.")
    parser.add_argument("--first-seed", type=int, default=first_seed,
                        help="Seed of the first run (the runs use --seeds seeds from here).")
    parser.add_argument("--floor", type=float, default=35.0,
                        help="Feasible: pruned-model Top1 on the validation subset >= this (%%).")
    parser.add_argument("--startup", type=int, default=STARTUP_TRIALS,
                        help="Random start-up trials of the model-based samplers.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, seeds=3, first_seed=0)
    parser.add_argument("--val-subset", type=int, default=0,
                        help="Evaluate on the first N validation images only (0: all).")
    parser.add_argument("--data", type=Path, default=None,
                        help="Data set [default: the shared mini set: 200 validation images, which "
                             "keeps each new architecture to seconds].")
    parser.add_argument("--samplers", default="gp,tpe", help="Model-based samplers to compare.")
    parser.add_argument("--metric", default="Relative_Latency",
                        choices=["Relative_Latency", "Total_Latency", "Latency"],
                        help="Latency figure to minimise (Relative_Latency: against the unpruned "
                             "ResNet56, timed in alternation).")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="Seconds each measurement may wait for a slow period of the machine to "
                             "end, as the reference kernel sees it (0: measure at once).")
    parser.add_argument("--history", type=Path, default=None,
                        help="Also write every run's trials (params, Top1_torch, objective) as JSON.")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgeprune" /
                        "search_efficiency.json", help="Measurement cache (JSON).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = Settings.load(data=args.data or REPO.parent / "shared" / "data" /
                             "cifar-10-binary-mini.tar.gz")
    reference = args.cache.with_name("resnet56_unpruned.onnx")
    if not reference.exists():
        reference.parent.mkdir(parents=True, exist_ok=True)
        export(pretrained_resnet56(settings), reference)
    trial_fn = CachedRapidTrial(settings, FileLatencyCache(args.cache), args.val_subset,
                                args.metric, args.quiet_wait, reference)
    started = time.time()
    rows, pooled, history = [], [], {}
    with tempfile.TemporaryDirectory() as out:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            records = run("random", seed, args.trials, args.floor, trial_fn, Path(out))
            history[f"random-{seed}"] = history_rows(records, args.metric)
            random_values = feasible_values(records, args.metric, args.floor)
            pooled += random_values
            feasible = [v for v in random_values if v is not None]
            if not feasible:
                print(f"seed {seed}: random search found nothing feasible; lower --floor")
                continue
            best = min(feasible)
            row = {"seed": seed, "random_best": best,
                   "random": first_reaching(random_values, best),
                   "oracle": oracle_trials(random_values, best, args.startup)}
            for name in args.samplers.split(","):
                records = run(name, seed, args.trials, args.floor, trial_fn, Path(out), args.startup)
                history[f"{name}-{seed}"] = history_rows(records, args.metric)
                values = feasible_values(records, args.metric, args.floor)
                row[name] = first_reaching(values, best)
                row[f"{name}_best"] = min((v for v in values if v is not None), default=None)
            rows.append(row)
            print(row, flush=True)
    if args.history:
        args.history.write_text(json.dumps(history, indent=1))
    names = args.samplers.split(",")
    print(f"\nResNet56 rapid trials (epochs 0) on {settings.data_path.name}, feasible: pruned "
          f"Top1 on the validation split >= {args.floor}% budget "
          f"{args.trials} trials per run; {trial_fn.measured} architectures measured in "
          f"{time.time() - started:.0f} s")
    print(f"objective: {args.metric} (Relative_Latency: pruned / unpruned request time; else ms)")
    print(f"{'seed':>4} {'random best':>14} {'random: trials':>14} " +
          " ".join(f"{n + ': trials':>14} {n + ' best':>12}" for n in names))
    for row in rows:
        cells = [f"{row['seed']:>4}", f"{row['random_best']:>14.4f}", f"{row['random']:>14}"]
        for n in names:
            best = row[f"{n}_best"]
            cells += [f"{str(row[n] or '>' + str(args.trials)):>14}",
                      f"{best:>12.4f}" if best is not None else f"{'-':>12}"]
        print(" ".join(cells))
    for n in names + ["oracle"]:
        ratios = [(row[n] or args.trials + 1) / row["random"] for row in rows]
        label = n if n != "oracle" else f"oracle after {args.startup} start-up trials (the floor)"
        if ratios:
            print(f"{label}: trials needed / random's own: median {statistics.median(ratios):.2f}, "
                  f"per seed {', '.join(f'{r:.2f}' for r in ratios)}")
    # The target's reading (module docstring): random search's expected trials to each threshold.
    for n in names:
        ratios = [(row[n] or args.trials + 1) / expected_trials(pooled, row["random_best"])
                  for row in rows]
        if ratios:
            median = statistics.median(ratios)
            print(f"{n}: trials needed / random's expected (pooled {len(pooled)} trials): median "
                  f"{median:.2f}, per seed {', '.join(f'{r:.2f}' for r in ratios)} -> target "
                  f"<= {TARGET:.2f} {'met' if median <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
