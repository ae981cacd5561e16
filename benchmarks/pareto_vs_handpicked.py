"""Does a multi-objective sweep find a model that beats the hand-picked schedule?

With one fixed retraining budget per model (the same epochs, steps per epoch and training images
for every model), this script measures:

1. the hand-picked schedule (``--schedule``) retrained with that budget;
2. uniform L1 filter pruning at equal MACs: one L1-ranked filter sparsity for every residual
   block's conv1 (what torch-pruning's MagnitudePruner with L1 importance and a uniform ratio does
   to those layers; torch-pruning removes the filters), the sparsity found by bisection so the MACs
   match the hand-picked model's;
3. a multi-objective sweep (H5's engine: Optuna TPE, minimise Total_Latency, maximise Top1) over
   the hand-picked schedule's per-pruner sparsities, each trial retrained with the same budget;

and prints whether any sweep model dominates each reference: Top1 at least as high and
Total_Latency lower. Every accuracy is on the validation split (the search split, held out of the train split) of
the settings' data set, by default the lossless CIFAR-10 binary version.

Budgets. On the 2-core development machine (no GPU) the default is ResNet20 with its hand-picked
schedule, 10 sweep trials, 1 epoch capped at 40 steps of 128 images per model (5,120 images), full
validation split (about 15 minutes when the machine is otherwise idle). On a GPU use ResNet56
with schedules/resnet56_filter_rank.yaml, 100 trials and 30 full epochs per model:

    python benchmarks/pareto_vs_handpicked.py                                   # 2-core budget
    python benchmarks/pareto_vs_handpicked.py --model resnet56_cifar \\
        --schedule schedules/resnet56_filter_rank.yaml --trials 100 --epochs 30 --max-steps 0
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.baseline import BaselineSpec, run_baselines
from pipeline.flow import RunConfig
from pipeline.measure.options import MeasureOptions
from pipeline.messages import TrialRecord
from pipeline.models import count_macs_params, create_model
from pipeline.pruning import load_schedule, prune_one_shot
from pipeline.report.analysis import pareto_front
from pipeline.search.storage import load_trials
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent
LATENCY, ACCURACY = "Total_Latency", "Top1"


def uniform_schedule(model_name: str, sparsity: float) -> str:
    """One L1-ranked filter pruner at ``sparsity`` on every residual block's conv1."""
    model = create_model(model_name)
    weights = [f"module.{name}.weight" for name, module in model.named_modules()
               if name.startswith("layer") and name.endswith(".conv1")]
    return yaml.safe_dump({
        "version": 1,
        "pruners": {"uniform_l1": {"class": "L1RankedStructureParameterPruner", "group_type": "Filters",
                                   "desired_sparsity": round(sparsity, 6), "weights": weights}},
        "extensions": {"net_thinner": {"class": "FilterRemover", "thinning_func_str": "remove_filters",
                                       "arch": model_name, "dataset": "cifar10"}},
        "policies": [{"pruner": {"instance_name": "uniform_l1"}, "epochs": [0]},
                     {"extension": {"instance_name": "net_thinner"}, "epochs": [0]}],
    }, sort_keys=False)


def macs_after(model_name: str, schedule: Path | str) -> int:
    """MACs of the pretrained-shape model once ``schedule``'s one-shot pruners have run."""
    model = create_model(model_name)
    prune_one_shot(model, load_schedule(schedule), torch.zeros(1, 3, 32, 32))
    return count_macs_params(model)[0]


def sparsity_at_macs(model_name: str, target_macs: int, steps: int = 14) -> tuple[float, int]:
    """The uniform sparsity whose MACs come closest to ``target_macs`` (bisection; MACs fall as
    sparsity rises)."""
    low, high = 0.0, 0.95
    best = (0.0, macs_after(model_name, uniform_schedule(model_name, 0.0)))
    for _ in range(steps):
        middle = (low + high) / 2
        macs = macs_after(model_name, uniform_schedule(model_name, middle))
        if abs(macs - target_macs) < abs(best[1] - target_macs):
            best = (middle, macs)
        low, high = (middle, high) if macs > target_macs else (low, middle)
    return best


def sweep_yaml(schedule: Path, model_name: str, epochs: int) -> str:
    """A bayes sweep over each pruner's sparsity of ``schedule``: Total_Latency vs Top1."""
    pruners = load_schedule(schedule).pruners
    parameters: dict[str, Any] = {f"{name}_desired_sparsity": {"min": 0.05, "max": 0.9}
                                  for name in pruners}
    parameters["epochs"] = {"value": epochs}
    parameters["edgeprune"] = {"value": {"metrics": [{"name": LATENCY, "goal": "minimize"},
                                                     {"name": ACCURACY, "goal": "maximize"}]}}
    return yaml.safe_dump({
        "name": f"pareto-vs-handpicked-{model_name}", "method": "bayes",
        "metric": {"name": ACCURACY, "goal": "maximize"}, "parameters": parameters,
        "command": ["edgeprune", "producer", "--schedule", str(schedule), "--model", model_name,
                    "${args}"],
    }, sort_keys=False)


def run_sweep(args: argparse.Namespace, settings: Settings, base: RunConfig, out_dir: Path,
              options: MeasureOptions) -> list[TrialRecord]:
    from pipeline.search.loop import LoopSpec, run_loop

    sweep_file = out_dir / "sweep.yaml"
    sweep_file.write_text(sweep_yaml(args.schedule, args.model, args.epochs))
    spec = LoopSpec(sweep=str(sweep_file), base=base, settings=settings,
                    out_dir=str(out_dir / "sweep"), n_trials=args.trials, seed=0,
                    measure_options=options)
    run_loop(spec)
    return load_trials(out_dir / "sweep")


def dominators(trials: list[TrialRecord], reference: dict[str, Any]) -> list[TrialRecord]:
    """Trials with Top1 >= the reference's and a lower Total_Latency, fastest first."""
    found = [t for t in trials if isinstance(t.metrics.get(ACCURACY), (int, float))
             and isinstance(t.metrics.get(LATENCY), (int, float))
             and t.metrics[ACCURACY] >= reference[ACCURACY]
             and t.metrics[LATENCY] < reference[LATENCY]]
    return sorted(found, key=lambda t: t.metrics[LATENCY])


def _line(name: str, metrics: dict[str, Any]) -> str:
    return (f"{name:<42} {metrics.get(ACCURACY, float('nan')):7.2f} "
            f"{metrics.get(LATENCY, float('nan')):10.3f} {metrics.get('macs', 0):>13,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20_cifar", help="pretrained network to prune")
    parser.add_argument("--schedule", type=Path, default=REPO / "schedules/resnet20_filter_rank.yaml",
                        help="the hand-picked schedule, also the sweep's base")
    parser.add_argument("--trials", type=int, default=10, help="sweep trials")
    parser.add_argument("--epochs", type=int, default=1, help="retraining epochs per model")
    parser.add_argument("--max-steps", type=int, default=40,
                        help="retraining steps per epoch per model (0: whole epochs)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N images")
    parser.add_argument("--quick-measure", action="store_true", help="short, noisy measurements")
    parser.add_argument("--out", type=Path, default=None, help="keep runs and results.json here")
    args = parser.parse_args()
    settings = Settings.load()
    options = MeasureOptions.fast() if args.quick_measure else MeasureOptions()
    budget = {"epochs": args.epochs, "max_steps_per_epoch": args.max_steps or None, "subset": args.subset}
    print(f"budget per model: {args.epochs} epoch(s), "
          f"{args.max_steps or 'all'} steps/epoch of 128 images, subset {args.subset or 'all'}; "
          f"{args.trials} sweep trials of {args.model}; accuracy on the validation split "
          "(held out of the train split)", flush=True)
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = args.out or Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        hand_macs = macs_after(args.model, args.schedule)
        sparsity, uniform_macs = sparsity_at_macs(args.model, hand_macs)
        references = {}
        for name, schedule in ((f"hand-picked ({args.schedule.name})", args.schedule),
                               (f"uniform L1 at equal MACs (s={sparsity:.3f})",
                                uniform_schedule(args.model, sparsity))):
            table = run_baselines(settings, out_dir / "references", model=args.model,
                                  schedule=schedule, eval_split="val", measure_options=options,
                                  specs=[BaselineSpec(name, True, args.epochs)],
                                  **budget)  # type: ignore[arg-type]
            references[name] = table.rows[0].metrics
        base = RunConfig(schedule=args.schedule, model=args.model, eval_split="val", **budget)  # type: ignore[arg-type]
        trials = run_sweep(args, settings, base, out_dir, options)
        measured = [t for t in trials if ACCURACY in t.metrics and LATENCY in t.metrics]
        front = [measured[i] for i in pareto_front([(t.metrics[LATENCY], t.metrics[ACCURACY])
                                                    for t in measured])]
        print(f"\n{'model':<42} {'Top1 %':>7} {'Total_Lat ms':>10} {'MACs':>13}")
        for name, metrics in references.items():
            print(_line(name, metrics))
        for trial in front:
            print(_line(f"sweep #{trial.number} (Pareto front)", trial.metrics))
        summary: dict[str, Any] = {"budget": budget, "trials": len(trials), "measured": len(measured),
                                   "references": references, "uniform_sparsity": sparsity,
                                   "hand_picked_macs": hand_macs, "uniform_macs": uniform_macs,
                                   "front": [t.to_dict() for t in front], "dominated": {}}
        for name, metrics in references.items():
            winners = dominators(measured, metrics)
            summary["dominated"][name] = [t.number for t in winners]
            if winners:
                w = winners[0]
                print(f"YES: {len(winners)} sweep model(s) dominate {name}; fastest #{w.number}: "
                      f"Top1 {w.metrics[ACCURACY]:.2f} >= {metrics[ACCURACY]:.2f}, "
                      f"{LATENCY} {w.metrics[LATENCY]:.3f} < {metrics[LATENCY]:.3f} ms "
                      f"({metrics[LATENCY] / w.metrics[LATENCY]:.2f}x faster)")
            else:
                print(f"NO: no sweep model dominates {name}")
        print(f"uniform L1 MACs {uniform_macs:,} vs hand-picked {hand_macs:,}; "
              f"{len(measured)}/{len(trials)} trials measured; wall {time.time() - started:.0f} s")
        (out_dir / "results.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
