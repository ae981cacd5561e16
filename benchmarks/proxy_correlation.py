"""Does the pruned accuracy predict the accuracy after retraining? Raw vs adaptive-BN Top1 (issue 15).

Random pruned ResNet56 architectures (width and depth: 0-12 of the 25 identity blocks removed
at random, then 0-60% of the conv1 filters of each stage's remaining blocks, L1-ranked), each
fine-tuned with one short fixed budget. Prints Spearman rho of the fine-tuned Top1 against
(a) the Top1 right after pruning and (b) the Top1 after re-estimating BatchNorm statistics on a
few hundred train images (EagleEye's adaptive BN), with the budget, machine and date; (c) the
MACs of the pruned model, the signal a proxy must beat to be worth its evaluation; (d) the
cross-entropy of (b)'s evaluation, the same forward passes read without rounding to right/wrong.

No proxy can rank the architectures better than the fine-tuned figure ranks itself: with
``--repeats 2`` each architecture is fine-tuned twice (training seeds 0 and 1) and the rho between
the two runs is printed as that ceiling; the proxies are then scored against the mean of the runs.
Each rho comes with a 95% bootstrap interval over the architectures (20 of them leave a wide one),
and so does the gap (b) - (a). ``--pool`` scores earlier runs' rows (other ``--seed`` draws, the
same budget) together with this run's, for an interval that 20 architectures cannot give.

    python benchmarks/proxy_correlation.py [--archs 20] [--steps 20] [--repeats 1] [--out runs/proxy.jsonl]
        [--pool runs/proxy_seed1.jsonl ...]

Rows are appended to --out as they finish (a rerun resumes); the data set is the settings'
default, the lossless CIFAR-10 binary version (EDGEPRUNE_DATA changes it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap, spearmanr

from _resnet56 import budget_arguments, pretrained_resnet56

from pipeline.batchnorm import Calibration, recalibrate_bn
from pipeline.data import DataSplits, load_data
from pipeline.latency.architectures import random_schedule
from pipeline.pruning import load_schedule, prune_one_shot
from pipeline.pruning.blocks import identity_blocks
from pipeline.settings import Settings
from pipeline.training import LR_ANNEALS, TrainConfig, evaluate, train


def measure_one(schedule: str, data: DataSplits, eval_split, calibration: Calibration, steps: int,
                batch_size: int, lr: float, repeats: int, lr_anneal: str = "none") -> dict:
    model = pretrained_resnet56()
    report = prune_one_shot(model, load_schedule(schedule))
    raw = evaluate(model, eval_split).top1
    recalibrate_bn(model, calibration.images)
    adaptive = evaluate(model, eval_split)
    pruned = copy.deepcopy(model.state_dict())
    runs, seconds = [], 0.0
    for seed in range(repeats):
        model.load_state_dict(pruned)
        started = time.perf_counter()
        train(model, data, TrainConfig(epochs=1, lr=lr, batch_size=batch_size, max_steps_per_epoch=steps,
                                       seed=seed, lr_anneal=lr_anneal))
        seconds += time.perf_counter() - started
        runs.append(evaluate(model, eval_split).top1)
    return {"raw_top1": raw, "adaptive_bn_top1": adaptive.top1, "adaptive_bn_loss": adaptive.loss,
            "finetuned_top1": float(np.mean(runs)),
            "finetuned_top1_runs": runs, "macs": report.macs_after, "arch": report.arch_after,
            "finetune_seconds": round(seconds / repeats, 1)}


def _with_interval(samples: tuple[list[float], ...], statistic, signed: bool) -> str:
    """``statistic`` of the paired ``samples`` and its 95% percentile-bootstrap interval over the rows
    (``signed``: a difference, printed with its sign)."""
    interval = bootstrap(samples, statistic, paired=True, vectorized=False, n_resamples=2000,
                         method="percentile", random_state=0).confidence_interval
    sign, separator = ("+", " to ") if signed else ("", "-")
    return (f"{statistic(*samples):{sign}.3f} (95% interval "
            f"{interval.low:{sign}.2f}{separator}{interval.high:{sign}.2f})")


def rho_with_interval(x: list[float], y: list[float]) -> str:
    """Spearman rho of ``x`` against ``y`` and its 95% percentile-bootstrap interval over the pairs."""
    return _with_interval((x, y), lambda a, b: spearmanr(a, b).statistic, signed=False)


def rho_gap_with_interval(better: list[float], worse: list[float], target: list[float]) -> str:
    """rho(better, target) - rho(worse, target) and its 95% paired-bootstrap interval over the rows."""
    def statistic(b, w, t):
        return spearmanr(b, t).statistic - spearmanr(w, t).statistic
    return _with_interval((better, worse, target), statistic, signed=True)


def read_rows(path: Path, budget: dict, fix: str, any_seed: bool = False) -> list[dict]:
    """The rows of an earlier run in ``path``, refused with ``fix`` unless every one was measured
    with ``budget`` (with ``any_seed``, on any architecture seed). Rows from before the budget was
    recorded are taken as measured with it."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        theirs = row.setdefault("budget", budget)
        if (dict(theirs, seed=budget["seed"]) if any_seed else theirs) != budget:
            raise SystemExit(f"{path} holds rows measured with {theirs}, not {budget}: {fix}")
    return rows


def pooled_rows(paths: list[Path], budget: dict) -> list[dict]:
    """The rows of the earlier runs in ``paths``, each measured with ``budget`` on an architecture
    seed of its own (the same draw twice would count its architectures twice)."""
    rows, seeds = [], {budget["seed"]}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"--pool {path}: no such file; give the --out of an earlier run of this benchmark")
        file_rows = read_rows(path, budget, "pool only runs of this budget (the seed may differ)", any_seed=True)
        if not file_rows:
            raise SystemExit(f"--pool {path}: holds no rows; give the --out of a run that measured some")
        file_seeds = {row["budget"]["seed"] for row in file_rows}
        if file_seeds & seeds:
            raise SystemExit(f"--pool {path}: architecture seed {min(file_seeds & seeds)} is already in the pool; "
                             "pool only different draws")
        seeds |= file_seeds
        rows += file_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", type=int, default=20, help="random architectures to measure")
    # The budget fits a shared 2-core VM (docs/results.md): 20 steps of 32 images per architecture.
    budget_arguments(parser, steps=20, batch_size=32, eval_images=500)
    parser.add_argument("--recalibrate", type=int, default=256, help="train images for adaptive BN")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fine-tunings per architecture (training seeds 0..N-1); 2 or more also "
                             "print the ceiling: rho between two runs of the same architectures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    parser.add_argument("--lr-anneal", choices=LR_ANNEALS, default="none",
                        help="cosine: anneal each fine-tuning's lr to 0 over its steps (none: constant)")
    parser.add_argument("--out", type=Path, default=Path("runs/proxy_correlation.jsonl"),
                        help="JSON lines, one per architecture, appended as they finish (a rerun resumes)")
    parser.add_argument("--pool", type=Path, nargs="+", default=[],
                        help="--out files of earlier runs with the same budget and other --seed draws: "
                             "the figures are printed over their architectures and this run's together")
    args = parser.parse_args()

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = Settings.load()
    data = load_data(settings.data_path, settings.cache_dir)
    # Fine-tuning validates after its epoch: a small val split keeps that cheap (unused here).
    data = DataSplits(train=data.train, val=data.val.head(100), test=data.test, classes=data.classes)
    eval_split = data.test.head(args.eval_images)
    calibration = Calibration.from_split(data.train, args.recalibrate)
    blocks = identity_blocks(pretrained_resnet56())
    rng = np.random.default_rng(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    budget = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "lr_anneal": args.lr_anneal,
              "recalibrate": args.recalibrate, "repeats": args.repeats, "seed": args.seed}
    done = read_rows(args.out, budget, "give another --out") if args.out.is_file() else []
    for index in range(args.archs):
        schedule, spec = random_schedule(rng, blocks)
        if index < len(done):
            continue
        row = {"index": index, **spec, "budget": budget,
               **measure_one(schedule, data, eval_split, calibration, args.steps, args.batch_size, args.lr,
                             args.repeats, args.lr_anneal)}
        print(json.dumps(row), flush=True)
        with args.out.open("a") as stream:
            stream.write(json.dumps(row) + "\n")
        done.append(row)
    done += pooled_rows(args.pool, budget)
    finetuned, raw, adaptive = ([r[key] for r in done] for key in ("finetuned_top1", "raw_top1", "adaptive_bn_top1"))
    draws = sorted({r["budget"]["seed"] for r in done})
    print(f"{len(done)} random pruned ResNet56 architectures (0-12 blocks removed, 0-60% conv1 filters per stage; "
          f"architecture seed{'s' if len(draws) > 1 else ''} {', '.join(map(str, draws))})")
    print(f"budget: {args.steps} SGD steps of {args.batch_size} train images (lr {args.lr}, "
          f"{'annealed to 0 on a cosine' if args.lr_anneal == 'cosine' else 'constant'}, momentum 0.9, "
          f"augmented) per architecture; adaptive BN on {args.recalibrate} train images; Top1 on the first "
          f"{len(eval_split)} test images of {settings.data_path.name}")
    runs = "the mean of its fine-tunings" if args.repeats > 1 else "fine-tuned Top1"
    print(f"Spearman rho of {runs} against (a) raw pruned Top1: "
          f"{rho_with_interval(raw, finetuned)}")
    print(f"                 against (b) adaptive-BN Top1: "
          f"{rho_with_interval(adaptive, finetuned)}")
    print(f"                 (b) minus (a): "
          f"{rho_gap_with_interval(adaptive, raw, finetuned)}")
    print(f"    (for comparison) against (c) MACs: {rho_with_interval([r['macs'] for r in done], finetuned)}")
    # Cross-entropy keeps what Top1 rounds away (how wrong the wrong answers are); rows from before
    # it was recorded have none.
    if all("adaptive_bn_loss" in r for r in done):
        print(f"                 against (d) adaptive-BN cross-entropy (lower first): "
              f"{rho_with_interval([-r['adaptive_bn_loss'] for r in done], finetuned)}")
    if args.repeats > 1:
        first, second = ([r["finetuned_top1_runs"][k] for r in done] for k in (0, 1))
        print(f"ceiling: fine-tuning seed 0 against seed 1 of the same architectures: "
              f"{rho_with_interval(first, second)}; mean |difference| "
              f"{np.mean(np.abs(np.subtract(first, second))):.2f} points")
    print(f"machine: {platform.node()} ({os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}); "
          f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
