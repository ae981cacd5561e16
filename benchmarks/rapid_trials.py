"""Rapid trials of ResNet56 per hour: random width + depth architectures, pruned, adaptive BN,
Top1 on a few hundred val images, predicted latency (no export, no consumer).

Usage: python benchmarks/rapid_trials.py --latency-model lm56.json [--trials 100 | --seconds 120] [--json]

Target (issue 16): at least 2,000 ResNet56 rapid trials an hour on 2 cores (1.8 s a trial). The
data, the pretrained model and the calibration images are loaded once (setup, reported apart),
and the first trial pays the block ranking of schedules/resnet56_depth_width.yaml's
``sensitivity`` criterion, which later trials reuse (reported apart too); trials/hour is the
steady state over the others. Prints the per-stage split (prune, BN recalibration, evaluation,
prediction), the machine, its load average and the date. Accuracy is on the validation split of the settings' data
set (by default the lossless CIFAR-10 binary version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.batchnorm import DEFAULT_RECALIBRATION_IMAGES  # noqa: E402
from pipeline.flow import PREDICTED, RunConfig  # noqa: E402
from pipeline.messages import Target  # noqa: E402
from pipeline.rapid import DEFAULT_RAPID_IMAGES, RAPID_STAGES, RapidEvaluator  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.status import TrialStatus  # noqa: E402

SCHEDULE = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_depth_width.yaml"
ROUND_TO = (1, 4, 8, 16)
TARGET_PER_HOUR = 2000


def random_overrides(rng: np.random.Generator) -> list[str]:
    """One random depth + width architecture of the depth-width schedule, with a random round_to."""
    sparsities = rng.uniform(0.05, 0.7, size=3)
    return [f"block_pruner.desired_sparsity={rng.uniform(0.0, 0.6):.2f}",
            *(f"filter_pruner_stage{i + 1}.desired_sparsity={s:.2f}" for i, s in enumerate(sparsities)),
            f"round_to={int(rng.choice(ROUND_TO))}"]


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-model", type=Path, default=None,
                        help="LatencyModel JSON for resnet56_cifar (without: no prediction, not timed)")
    parser.add_argument("--trials", type=int, default=100, help="rapid trials after the first [100]")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="run for this long instead of a trial count (0: use --trials)")
    parser.add_argument("--images", type=int, default=DEFAULT_RAPID_IMAGES,
                        help=f"val images Top1 is measured on [{DEFAULT_RAPID_IMAGES}]")
    parser.add_argument("--bn-images", type=int, default=DEFAULT_RECALIBRATION_IMAGES,
                        help=f"train images of adaptive BN [{DEFAULT_RECALIBRATION_IMAGES}]")
    parser.add_argument("--seed", type=int, default=0, help="architecture draws [0]")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    latency_model = latency_models = None
    if args.latency_model is not None:
        from pipeline.latency import LatencyModels, load_latency_model

        latency_model = load_latency_model(args.latency_model)
        latency_model.check(latency_model.target, "resnet56_cifar")
        latency_models = LatencyModels((latency_model,))
    # The trials run at the model's target, whichever precision it was profiled at.
    base = RunConfig(schedule=SCHEDULE, bn_recalibrate=args.bn_images,
                     target=latency_model.target if latency_model else Target())
    load_before = os.getloadavg()
    start = time.perf_counter()
    settings = Settings.load()
    evaluator = RapidEvaluator(base, settings, latency_models, args.images)
    rng = np.random.default_rng(args.seed)
    print(f"data and model loaded in {time.perf_counter() - start:.1f} s; first trial (ranks the "
          "residual blocks once: minutes on a loaded machine) ...", file=sys.stderr, flush=True)
    # Some blocks removed, so that the first trial is the one that ranks them (once, memoised).
    first = evaluator(overrides=[*random_overrides(rng), "block_pruner.desired_sparsity=0.3"])
    setup_s = time.perf_counter() - start
    stages = {name: 0.0 for name in RAPID_STAGES}
    totals, top1, collapsed = [], [], 0
    began = time.perf_counter()
    while (time.perf_counter() - began < args.seconds) if args.seconds else len(totals) < args.trials:
        t0 = time.perf_counter()
        result = evaluator(overrides=random_overrides(rng))
        totals.append(time.perf_counter() - t0)
        for name, seconds in result.stage_seconds.items():
            stages[name] += seconds
        top1.append(result.metrics["Top1_before"])
        collapsed += result.status == TrialStatus.COLLAPSED
        if len(totals) % 20 == 0:
            print(f"{len(totals)} trials, {3600 / statistics.mean(totals):.0f}/h so far", file=sys.stderr,
                  flush=True)
    n = len(totals)
    mean = statistics.mean(totals)
    figures = {
        "trials": n, "trials_per_hour": round(3600 / mean), "target_per_hour": TARGET_PER_HOUR,
        "seconds_per_trial": {"mean": round(mean, 3), "median": round(statistics.median(totals), 3),
                              "p90": round(float(np.percentile(totals, 90)), 3)},
        "stage_seconds_mean": {k: round(v / n, 3) for k, v in stages.items()},
        "other_seconds_mean": round(mean - sum(stages.values()) / n, 3),
        "setup_seconds": round(setup_s, 2), "first_trial_seconds": round(sum(first.stage_seconds.values()), 2),
        "eval_images": args.images, "bn_images": args.bn_images, "eval_precision": "fp32",
        "predicted": latency_model is not None, "collapsed": collapsed,
        "top1_before": {"min": min(top1), "median": statistics.median(top1), "max": max(top1)},
        "predicted_ms_first": first.metrics.get(PREDICTED),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": machine(),
        "note": f"Top1 on {args.images} val images held out of the train split of {settings.data_path.name}",
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    m = figures["machine"]
    print(f"rapid trials of ResNet56 (depth + width, round_to in {ROUND_TO}), {m['date']}")
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; load average "
          f"{figures['load_average']['before']} before, {figures['load_average']['after']} after")
    print(f"{n} trials: {figures['trials_per_hour']}/h (target {TARGET_PER_HOUR}/h), "
          f"{mean:.3f} s mean, {figures['seconds_per_trial']['median']:.3f} s median, "
          f"{figures['seconds_per_trial']['p90']:.3f} s p90")
    for name, seconds in figures["stage_seconds_mean"].items():
        print(f"  {name:<16} {seconds:6.3f} s")
    print(f"  {'(other)':<16} {figures['other_seconds_mean']:6.3f} s")
    print(f"setup {setup_s:.1f} s (data, model, first trial incl. block ranking "
          f"{figures['first_trial_seconds']:.1f} s); Top1 on {args.images} val images after adaptive BN "
          f"on {args.bn_images} (fp32): {figures['top1_before']}; {collapsed} collapsed")
    print(f"Note: {figures['note']}.")


if __name__ == "__main__":
    main()
