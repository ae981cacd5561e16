"""Does the search find models a user would pick over the obvious alternatives? (issue 16 item 6)

Everything is measured side by side in one run on one machine, with one fixed fine-tuning budget
(epochs x train images, the same SGD settings, the same adaptive BN and, with ``--kd-weight``, the
same teacher: ResNet56 fine-tuned with that budget) for every final model:

- references: ResNet20, 32, 44 and 56 off the shelf; Distiller's hand-picked ResNet56 filter
  schedule; uniform L1 filter pruning of every block's first convolution of ResNet56 at the
  hand-picked schedule's MACs (the one-ratio-everywhere baseline torch-pruning users start from);
- edgeprune's front: rapid trials of ``sweeps/06_depth_width_pareto.yaml`` (prune + adaptive-BN
  Top1 on validation images + the latency model's prediction; no export, no device time), then,
  for each latency budget the references set (and 1/1.6 of ResNet56), the rapid trial with the best
  proxy Top1 predicted to fit it, fine-tuned with the same budget.

Every final model is exported, compiled with OpenVINO (fp32 asked, the precision the engine ran is
printed) and evaluated on the test split (deployed Top1/Top5), then all are timed in alternation in
one process: each poll times a window of every model, in a shuffled order, and the ratio of each
model's window median to ResNet56's in that poll is kept; ``Relative_Latency`` is the median ratio,
its interquartile range over it the spread (a spread over 0.1 is flagged as noise). With
``--int8`` every fp32 final model is also quantized (NNCF post-training, 300 train images) and
measured the same way beside the fp32 ones, its ratio still to fp32 ResNet56. With
``--int8-latency-model`` (an INT8 profile of ResNet56) precision is searched too, stratified: as
many rapid trials again at int8, priced by the INT8 model, and the best INT8 trial predicted at 1/3
of fp32 ResNet56's latency joins the front (fine-tuned fp32 with the same budget, quantized the
same way). The proxy Top1 is the fp32 model's, so the search does not see what quantization costs;
the deployed INT8 Top1 does. The fp32 verdicts (speed-up, dominance) read fp32 rows only; the INT8
target is met by a searched INT8 model only, and the references that reach it are listed beside.

One fine-tuning is one draw: its seed picks the validation hold-out (so which train images), the
batch order and the augmentation, and moves Top1 by a few tenths of a point at these budgets. With
``--repeats N`` every final model is fine-tuned N times (seeds ``--seed`` .. ``--seed``+N-1), Top1
and Top5 are the means of the N deployed models, and the pooled standard deviation between seeds is
printed with the verdicts: a dominance whose accuracy margin is under two standard errors of a
difference of two means is marked "within seed noise". Timing uses the first seed's export (the
architecture is the same).

    python benchmarks/search_quality.py [--train-images 10000] [--epochs 1] [--rapid-trials 300]

Writes ``<out>/search_quality.json`` and ``<out>/pareto.png``; finished fine-tunings are kept in
``<out>/<name>/`` so a rerun resumes. Accuracies are on the settings' data set, by default the
lossless CIFAR-10 binary version.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.baseline import UNPRUNED_SCHEDULE  # noqa: E402
from pipeline.data import load_data, to_tensor_batch  # noqa: E402
from pipeline.files import atomic_write_text  # noqa: E402
from pipeline.flow import PREDICTED, RunConfig, load_model, produce  # noqa: E402
from pipeline.measure import MeasureOptions, measure, open_engine  # noqa: E402
from pipeline.measure.relative import ratio_and_spread  # noqa: E402
from pipeline.messages import Target, TrialRecord  # noqa: E402
from pipeline.models import count_macs_params  # noqa: E402
from pipeline.pruning import load_schedule, prune_one_shot  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.training import LR_ANNEALS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HAND_PICKED = ROOT / "schedules" / "resnet56_filter_rank.yaml"
SWEEP = ROOT / "sweeps" / "06_depth_width_pareto.yaml"
FAMILY = ("resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar")
REFERENCE = "resnet56_cifar"
#: The speed-up target of the issue: 1.6x faster than ResNet56 at most 1 point below it.
TARGET_SPEEDUP, TARGET_POINTS = 1.6, 1.0
NOISY_SPREAD = 0.1
#: With INT8: the issue's target, 3x faster than (fp32) ResNet56 at most 1 point below it.
INT8_SPEEDUP = 3.0
#: A finalist must be predicted at least 3% faster than the reference whose budget it fills.
BUDGET_MARGIN = 0.97
SWEEP_SCHEDULE = ROOT / "schedules" / "resnet_cifar_depth_width.yaml"


@dataclass
class Candidate:
    """A model to fine-tune: a base network and the schedule (with overrides) that prunes it."""

    name: str
    model: str
    schedule: str
    overrides: list[str] = field(default_factory=list)
    kind: str = "reference"  # reference | front
    params: dict[str, Any] = field(default_factory=dict)
    #: The rapid trial's figures (front models): proxy Top1 and predicted latency ratio.
    rapid: dict[str, Any] = field(default_factory=dict)
    #: The precision it is deployed at (fine-tuning is fp32 either way).
    precision: str = "fp32"
    #: What the fine-tuning starts from (front models): base network, blocks removed and channel
    #: counts of the rapid trial's pruned model. Two finalists with the same start get the same
    #: fine-tunings (they are deterministic per seed), so the second reuses the first's.
    pruned_as: list[Any] = field(default_factory=list)


def uniform_l1_schedule(sparsity: float) -> str:
    """One L1 filter pruner over the first convolution of every ResNet56 block, one ratio."""
    blocks = [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(9)]
    weights = ", ".join(f"module.{b}.conv1.weight" for b in blocks)
    return ("version: 1\npruners:\n  uniform:\n    class: L1RankedStructureParameterPruner\n"
            f"    group_type: Filters\n    desired_sparsity: {sparsity:.4f}\n    weights: [{weights}]\n"
            "policies:\n  - pruner: {instance_name: uniform}\n    epochs: [0]\n")


def pruned_macs(settings: Settings, model_name: str, schedule: str, overrides=()) -> int:
    model = load_model(RunConfig(schedule=schedule, model=model_name), settings)
    prune_one_shot(model, load_schedule(schedule, overrides))
    return count_macs_params(model)[0]


def uniform_at_macs(settings: Settings, macs: int) -> tuple[str, float]:
    """The uniform L1 schedule whose pruned ResNet56 has the MACs closest to ``macs`` (bisection)."""
    low, high = 0.0, 0.95
    for _ in range(10):
        middle = (low + high) / 2
        if pruned_macs(settings, REFERENCE, uniform_l1_schedule(middle)) > macs:
            low = middle
        else:
            high = middle
    best = min((low, high), key=lambda s: abs(pruned_macs(settings, REFERENCE, uniform_l1_schedule(s)) - macs))
    return uniform_l1_schedule(best), best


def references(settings: Settings) -> list[Candidate]:
    hand_macs = pruned_macs(settings, REFERENCE, str(HAND_PICKED))
    uniform, sparsity = uniform_at_macs(settings, hand_macs)
    print(f"hand-picked ResNet56: {hand_macs:,} MACs; uniform L1 at {100 * sparsity:.1f}% of every "
          "block's conv1 filters matches it", flush=True)
    family = [Candidate(name.split("_")[0], name, UNPRUNED_SCHEDULE) for name in FAMILY]
    return family + [Candidate("hand-picked", REFERENCE, HAND_PICKED.read_text()),
                     Candidate("uniform-L1", REFERENCE, uniform, params={"uniform_sparsity": round(sparsity, 4)})]


def search_space(args: argparse.Namespace, precision: str) -> Any:
    """sweeps/06 as the rapid rung sees it at one ``precision``, and every model with the
    benchmark's one KD and lr-anneal setting (equal fine-tuning)."""
    from pipeline.search.config import load_sweep
    from pipeline.yaml_input import safe_load

    data = safe_load(SWEEP.read_text())
    data["parameters"]["precision"] = {"value": precision}
    data["parameters"]["kd_weight"] = {"value": args.kd_weight}
    data["parameters"]["lr_anneal"] = {"value": args.lr_anneal}
    return load_sweep(data)


def predicted_ratio(latency_model: Any, model_name: str, schedule: str) -> float:
    from pipeline.latency import build_architecture

    model = build_architecture(model_name, load_schedule(schedule))
    return latency_model.predict_module(model) / latency_model.reference_ms


def rapid_search(settings: Settings, args: argparse.Namespace, precision: str, models: Any,
                 base: RunConfig) -> list[Any]:
    """``--rapid-trials`` rapid trials of sweeps/06 at ``precision`` through the sweep engine
    (priced by ``models``' one of that precision); those with figures. Kept in the out folder, so
    a rerun keeps the search it already paid for."""
    import optuna

    from pipeline.search.engine import SweepRunner, make_sampler
    from pipeline.search.fidelity import make_rapid_trial_function, rapid_config

    config = rapid_config(search_space(args, precision))
    saved = args.out / ("rapid_trials.json" if precision == "fp32" else f"rapid_trials_{precision}.json")
    if saved.is_file():
        data = json.loads(saved.read_text())
        records, rapid_s = [TrialRecord.from_dict(r) for r in data["records"]], data["seconds"]
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=[o.goal for o in config.objectives],
                                    sampler=make_sampler(config, args.seed))
        rapid_fn = make_rapid_trial_function(base, settings, models, args.rapid_images)
        started = time.perf_counter()
        records = SweepRunner(config, study, rapid_fn, args.out / f"rapid-{precision}", args.rapid_trials,
                              on_record=_rapid_line).run()
        rapid_s = time.perf_counter() - started
        atomic_write_text(saved, json.dumps({"seconds": rapid_s, "records": [r.to_dict() for r in records]},
                                            default=str))
    usable = [r for r in records if r.metrics.get(PREDICTED) is not None and r.metrics.get("Top1_before") is not None]
    print(f"{len(records)} {precision} rapid trials in {rapid_s:.0f} s ({3600 * len(records) / rapid_s:.0f}/hour), "
          f"{len(usable)} with figures", flush=True)
    return usable


def search_front(settings: Settings, args: argparse.Namespace, refs: list[Candidate]) -> list[Candidate]:
    """Rapid trials of sweeps/06, then one finalist per latency budget: the best proxy Top1 among
    fp32 trials predicted to run at most ``BUDGET_MARGIN`` of each reference's latency (and at
    1/1.6 of ResNet56's), none equal to a reference; with an INT8 latency model, as many INT8
    trials again and the best of them predicted at 1/3 of fp32 ResNet56's latency or less. Each
    precision gets its own trials (stratified) because an INT8 trial has the fp32 twin's proxy
    Top1 at about half its predicted latency: searched jointly, the sampler would all but stop
    drawing fp32 ones, and the fp32 verdicts need them."""
    from pipeline.latency import LatencyModels, load_latency_model

    latency_model = load_latency_model(args.latency_model)
    latency_model.check(Target(precision="fp32"), REFERENCE)
    models = [latency_model]
    if args.int8_latency_model:
        models.append(load_latency_model(args.int8_latency_model))
        models[-1].check(Target(precision="int8"), REFERENCE)
    base = RunConfig(schedule=str(SWEEP_SCHEDULE), model=REFERENCE, subset=args.train_images,
                     bn_recalibrate=args.bn_images, seed=args.seed)
    priced = LatencyModels(tuple(models))
    usable = {m.target.precision: rapid_search(settings, args, m.target.precision, priced, base) for m in models}
    budgets = {(f"<{ref.name}", "fp32"): predicted_ratio(latency_model, ref.model, ref.schedule) for ref in refs}
    budgets[(f">={TARGET_SPEEDUP}x", "fp32")] = 1 / TARGET_SPEEDUP / BUDGET_MARGIN
    if args.int8_latency_model:
        budgets[(f">={INT8_SPEEDUP}x int8", "int8")] = 1 / INT8_SPEEDUP / BUDGET_MARGIN
    # A trial whose cuts round_to rounded away is its base as it comes: a reference, not a finalist.
    family_macs = {pruned_macs(settings, name, UNPRUNED_SCHEDULE) for name in FAMILY}
    chosen: dict[tuple[str, int], Candidate] = {}
    for (label, precision), budget in sorted(budgets.items(), key=lambda kv: kv[1]):
        # Every ratio is to fp32 ResNet56 (the fp32 model's reference), whichever model priced it.
        fits = [r for r in usable[precision] if r.metrics[PREDICTED] / latency_model.reference_ms <= budget * BUDGET_MARGIN
                and not (not r.metrics.get("blocks_removed") and r.metrics.get("macs") in family_macs)]
        if not fits:
            print(f"  budget {label} ({budget:.3f}): no rapid trial fits", flush=True)
            continue
        best = max(fits, key=lambda r: r.metrics["Top1_before"])
        if (precision, best.number) not in chosen:
            chosen[(precision, best.number)] = _finalist(best, base, label, latency_model.reference_ms)
    return list(chosen.values())


def _finalist(record: Any, base: RunConfig, label: str, reference_ms: float) -> Candidate:
    """The front candidate of one rapid trial (fine-tuned fp32, deployed at the trial's precision)."""
    from pipeline.search.trials import run_config_for

    run = run_config_for(base, record.params)
    precision = run.target.precision
    ratio = record.metrics[PREDICTED] / reference_ms
    print(f"  budget {label}: trial {record.number} {run.model} {precision}, predicted "
          f"{ratio:.3f}, proxy Top1 {record.metrics['Top1_before']:.1f}", flush=True)
    name = f"front-{record.number}" if precision == "fp32" else f"front-{precision}-{record.number}"
    # Rapid records of older runs carry no signature: their finalists are never taken as twins.
    signature = record.metrics.get("arch_signature")
    return Candidate(name, run.model, str(SWEEP_SCHEDULE), [str(o) for o in run.overrides],
                     kind="front", params=dict(record.params), precision=precision,
                     rapid={"Top1_before": record.metrics["Top1_before"], "predicted_ratio": round(ratio, 4),
                            "budget": label},
                     pruned_as=[run.model, list(record.metrics.get("blocks_removed") or []), signature]
                     if signature else [])


def _rapid_line(record: Any) -> None:
    m = record.metrics
    print(f"  rapid trial {record.number}: {record.params.get('model')} {record.status} "
          f"proxy Top1 {m.get('Top1_before', float('nan')):.1f} predicted {m.get(PREDICTED, float('nan')):.3f} ms",
          file=sys.stderr, flush=True)


def finetune(candidate: Candidate, args: argparse.Namespace, settings: Settings, out: Path,
             seed: int) -> dict[str, Any]:
    """Prune, fine-tune with the fixed budget and export through ``pipeline.flow.produce``; resumable."""
    run_dir = out / (candidate.name if seed == args.seed else f"{candidate.name}-seed{seed}")
    done = run_dir / "finetuned.json"
    budget = {"epochs": args.epochs, "train_images": args.train_images, "lr": args.lr,
              "lr_anneal": args.lr_anneal, "kd_weight": args.kd_weight}
    if done.is_file():
        kept = json.loads(done.read_text())
        if kept.get("budget", budget) != budget:
            raise SystemExit(f"{done} was fine-tuned with {kept['budget']}, not {budget}: give another --out")
        return kept
    run_dir.mkdir(parents=True, exist_ok=True)
    config = RunConfig(schedule=candidate.schedule, overrides=candidate.overrides, model=candidate.model,
                       epochs=args.epochs, lr=args.lr, lr_anneal=args.lr_anneal, batch_size=args.batch_size,
                       subset=args.train_images,
                       eval_split="test", eval_subset=args.test_images, bn_recalibrate=args.bn_images, kd_weight=args.kd_weight,
                       kd_temperature=args.kd_temperature, seed=seed, params=candidate.params)
    started = time.perf_counter()
    produced = produce(config, settings, run_dir)
    if produced.onnx_path is None:
        raise SystemExit(f"{candidate.name}: {produced.status} ({produced.reason})")
    row = {**asdict(candidate), "onnx": str(produced.onnx_path), "status": str(produced.status), "budget": budget,
           "finetune_s": round(time.perf_counter() - started, 1),
           "n_params": produced.metrics.get("params"),
           **{k: produced.metrics.get(k) for k in ("macs", "Top1_torch", "Top5_torch", "Top1_before",
                                                   "blocks_removed", "retrain_seconds")}}
    atomic_write_text(done, json.dumps(row, indent=2))
    return row


def engine_options(precision: str, calibration: np.ndarray | None, **overrides: Any) -> MeasureOptions:
    """Short timing settings; an INT8 model is quantized (NNCF) on ``calibration`` train images."""
    return MeasureOptions.fast(throughput=False, profile_layers=False,
                               calibration_images=calibration if precision == "int8" else None, **overrides)


def deployed_accuracy(onnx: list[str], images: np.ndarray, labels: np.ndarray, precision: str = "fp32",
                      calibration: np.ndarray | None = None) -> dict[str, Any]:
    """Top1/Top5 of the compiled models (one per fine-tuning seed) on the test images: their means,
    each seed's Top1, and the precision the engine ran."""
    options = engine_options(precision, calibration, remeasure=0)
    runs = [measure(path, Target(precision=precision), images, labels, options).to_metrics() for path in onnx]
    return {"Top1": float(np.mean([m["Top1"] for m in runs])), "Top5": float(np.mean([m["Top5"] for m in runs])),
            "Top1_runs": [m["Top1"] for m in runs],
            **{k: runs[0].get(k) for k in ("inference_precision", "openvino_version")}}


def alternating_ratios(onnx: dict[str, tuple[str, str]], reference: str, polls: int, window: int,
                       seed: int, calibration: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Relative_Latency of every model (name: ONNX path, precision) to ``reference``: windows of
    all timed in shuffled order per poll."""
    engines = {name: open_engine(Path(path), Target(precision=precision), engine_options(precision, calibration))
               for name, (path, precision) in onnx.items()}
    sample = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    for engine in engines.values():
        engine.latency_samples(sample, 50)  # warm-up
    rng = random.Random(seed)
    names = list(engines)
    ratios: dict[str, list[float]] = {name: [] for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    for poll in range(polls):
        rng.shuffle(names)
        window_ms = {name: float(np.median(engines[name].latency_samples(sample, window))) for name in names}
        for name in names:
            ratios[name].append(window_ms[name] / window_ms[reference])
            medians[name].append(window_ms[name])
        print(f"\rtiming in alternation: poll {poll + 1}/{polls}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    figures = {}
    for name in ratios:
        ratio, spread = ratio_and_spread(ratios[name])
        figures[name] = {"Relative_Latency": ratio, "relative_spread": spread,
                         "Total_Latency_min_window": min(medians[name])}
    return figures


def row_dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` at least as fast and as accurate as ``b``, strictly better in one."""
    from pipeline.search.fidelity import dominates

    return dominates((a["Relative_Latency"], -a["Top1"]), (b["Relative_Latency"], -b["Top1"]))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.report.analysis import pareto_front

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for kind, precision, marker, colour, label in (
            ("reference", "fp32", "s", "#1f77b4", "reference"), ("front", "fp32", "o", "#ff7f0e", "edgeprune (searched)"),
            ("reference", "int8", "s", "#9ecae1", "reference, INT8"), ("front", "int8", "o", "#fdae6b", "searched, INT8")):
        subset = [r for r in rows if r["kind"] == kind and r["precision"] == precision]
        if not subset:
            continue
        ax.scatter([1 / r["Relative_Latency"] for r in subset], [r["Top1"] for r in subset], marker=marker,
                   c=colour, label=label)
        for r in subset:
            ax.annotate(r["name"], (1 / r["Relative_Latency"], r["Top1"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    front = [rows[i] for i in pareto_front([(r["Relative_Latency"], r["Top1"]) for r in rows])]
    ax.plot([1 / r["Relative_Latency"] for r in front], [r["Top1"] for r in front], "--", c="#7f7f7f",
            lw=0.8, label="Pareto front of all")
    ax.set_xlabel("speed-up over ResNet56 (1 / Relative_Latency, OpenVINO CPU, timed in alternation)")
    ax.set_ylabel("deployed Top1 on the test split (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_noise(rows: list[dict[str, Any]]) -> float | None:
    """Pooled standard deviation (points) of Top1 between fine-tuning seeds of the same model."""
    spread = [np.var(r["Top1_runs"], ddof=1) for r in rows if len(r.get("Top1_runs", ())) > 1]
    return float(np.sqrt(np.mean(spread))) if spread else None


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets on the measured rows: speed-up and dominance among fp32 models, and
    (with INT8 rows) the INT8 speed-up against fp32 ResNet56. With several seeds a dominance whose
    accuracy margin is under two standard errors of a difference of means is "within seed noise"."""
    by_name = {r["name"]: r for r in rows}
    base = by_name["resnet56"]
    int8 = [r for r in rows if r["precision"] == "int8" and 1 / r["Relative_Latency"] >= INT8_SPEEDUP
            and r["Top1"] >= base["Top1"] - TARGET_POINTS]
    rows = [r for r in rows if r["precision"] == "fp32"]
    front = [r for r in rows if r["kind"] == "front"]
    fast_enough = [r for r in front if 1 / r["Relative_Latency"] >= TARGET_SPEEDUP
                   and r["Top1"] >= base["Top1"] - TARGET_POINTS]
    noise = seed_noise(rows)
    margin_se = float(noise * np.sqrt(2 / len(base["Top1_runs"]))) if noise is not None else None
    dominated, within_noise = {}, {}
    for ref in (r for r in rows if r["kind"] == "reference"):
        winners = [r for r in front if row_dominates(r, ref)]
        dominated[ref["name"]] = [r["name"] for r in winners]
        within_noise[ref["name"]] = [r["name"] for r in winners
                                     if margin_se is not None and r["Top1"] - ref["Top1"] < 2 * margin_se]
    return {"speedup_target": {"met": bool(fast_enough), "models": [r["name"] for r in fast_enough],
                               "resnet56_top1": base["Top1"]},
            "dominated_by_front": dominated,
            "seed_noise": {"top1_sd_points": noise, "margin_se_points": margin_se,
                           "dominance_within_noise": within_noise},
            "every_reference_dominated": all(dominated.values()),
            "every_reference_dominated_beyond_noise": all(
                set(winners) - set(within_noise[ref]) for ref, winners in dominated.items()),
            # The target asks for a searched model; references that reach it are listed beside.
            "int8_target": {"met": any(r["kind"] == "front" for r in int8),
                            "models": [r["name"] for r in int8 if r["kind"] == "front"],
                            "references": [r["name"] for r in int8 if r["kind"] == "reference"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=10000, help="train images of the fine-tuning budget")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the fine-tuning budget")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate of every fine-tuning")
    parser.add_argument("--lr-anneal", choices=LR_ANNEALS, default="none",
                        help="cosine: anneal every model's lr to 0 over its fine-tuning (none: constant)")
    parser.add_argument("--batch-size", type=int, default=128, help="train images per SGD step")
    parser.add_argument("--bn-images", type=int, default=512, help="train images for adaptive BN")
    parser.add_argument("--kd-weight", type=float, default=0.0, help="distillation weight for every model (0: off)")
    parser.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature T")
    parser.add_argument("--rapid-trials", type=int, default=300, help="rapid trials of the search")
    parser.add_argument("--rapid-images", type=int, default=500, help="val images of a rapid trial's Top1")
    parser.add_argument("--latency-model", type=Path, required=True,
                        help="ResNet56 fp32 latency model of this machine (edgeprune latency profile)")
    parser.add_argument("--test-images", type=int, default=10000, help="first N test images for deployed Top1")
    parser.add_argument("--polls", type=int, default=30, help="alternating timing polls")
    parser.add_argument("--window", type=int, default=100, help="requests per model per poll")
    parser.add_argument("--int8-latency-model", type=Path, default=None,
                        help="ResNet56 int8 latency model of this machine (edgeprune latency profile "
                             "--precision int8): as many rapid trials again at int8, priced by it, and "
                             "the front gains the best INT8 trial predicted 3x faster than fp32 ResNet56")
    parser.add_argument("--int8", action="store_true",
                        help="also quantize every fp32 final model, references included, to INT8 (NNCF, 300 "
                             "train images) and measure it beside the fp32 ones")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the search, of the first fine-tuning and of the timing order")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fine-tunings of every final model (seeds SEED..SEED+N-1); Top1 is their "
                             "mean and the seed-to-seed spread is printed with the verdicts")
    parser.add_argument("--out", type=Path, default=Path("runs/search_quality"),
                        help="folder of the results, models and plot (a rerun resumes)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more fine-tunings per model")

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = Settings.load()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    refs = references(settings)
    candidates = refs + search_front(settings, args, refs)
    rows = []
    finetuned: dict[str, list[dict[str, Any]]] = {}  # pruned_as -> fine-tunings
    for index, candidate in enumerate(candidates):
        twin = finetuned.get(json.dumps(candidate.pruned_as)) if candidate.pruned_as else None
        if twin is not None:
            print(f"[{index + 1}/{len(candidates)}] {candidate.name}: the same pruned {candidate.model} as "
                  f"{twin[0]['name']}, whose fine-tunings it reuses", flush=True)
            runs = [{**run, **asdict(candidate)} for run in twin]
        else:
            runs = []
            for seed in range(args.seed, args.seed + args.repeats):
                print(f"[{index + 1}/{len(candidates)}] fine-tuning {candidate.name} ({candidate.model}), seed {seed}",
                      flush=True)
                runs.append(finetune(candidate, args, settings, args.out, seed))
            if candidate.pruned_as:
                finetuned[json.dumps(candidate.pruned_as)] = runs
        # The precision is the candidate's, whatever a kept fine-tuning from an older run recorded.
        rows.append({**runs[0], "precision": candidate.precision, "onnx_runs": [run["onnx"] for run in runs],
                     "Top1_torch_runs": [run["Top1_torch"] for run in runs]})
    data = load_data(settings.data_path, settings.cache_dir)
    test = data.test.head(args.test_images)
    images, labels = to_tensor_batch(test.images), test.labels
    calibration = data.calibration_images() if args.int8 or args.int8_latency_model else None
    rows += [{**row, "name": f"{row['name']}-int8", "precision": "int8"} for row in rows
             if args.int8 and row["precision"] == "fp32"]
    for row in rows:
        print(f"deployed accuracy of {row['name']}", flush=True)
        row.update(deployed_accuracy(row["onnx_runs"], images, labels, row["precision"], calibration))
    timing = alternating_ratios({r["name"]: (r["onnx"], r["precision"]) for r in rows}, "resnet56",
                                args.polls, args.window, args.seed, calibration)
    for row in rows:
        row.update(timing[row["name"]])
        row["noisy"] = row["relative_spread"] > NOISY_SPREAD
    report = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()})",
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "budget": {"epochs": args.epochs, "train_images": args.train_images, "lr": args.lr,
                   "lr_anneal": args.lr_anneal,
                   "batch_size": args.batch_size, "bn_images": args.bn_images, "kd_weight": args.kd_weight,
                   "rapid_trials": args.rapid_trials, "int8": args.int8,
                   "int8_searched": bool(args.int8_latency_model), "repeats": args.repeats},
        "test_images": len(test.labels), "seconds": round(time.perf_counter() - started, 1),
        "rows": rows, "verdicts": verdicts(rows),
        "note": f"Top1 on the test split of {settings.data_path.name}",
    }
    atomic_write_text(args.out / "search_quality.json", json.dumps(report, indent=2))
    plot(rows, args.out / "pareto.png", f"{args.epochs} ep x {args.train_images} imgs, {report['date']}")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['machine']}, {report['date']}; budget per model: {report['budget']}")
    print(f"{'model':<26}{'kind':<10}{'base':<16}{'speed-up':>9}{'spread':>8}{'Top1':>7}{'Top5':>7}"
          f"{'MACs':>13}  precision")
    for r in sorted(report["rows"], key=lambda r: r["Relative_Latency"]):
        flag = " noisy" if r["noisy"] else ""
        print(f"{r['name']:<26}{r['kind']:<10}{r['model']:<16}{1 / r['Relative_Latency']:>8.2f}x"
              f"{r['relative_spread']:>8.3f}{r['Top1']:>7.2f}{r['Top5']:>7.2f}{r['macs']:>13,}  "
              f"{r['precision']}{' (float layers ' + r['inference_precision'] + ')' if r['precision'] == 'int8' else ''}{flag}")
    if report["budget"]["repeats"] > 1:
        print("Top1 of each fine-tuning seed: " + "; ".join(
            f"{r['name']} {' / '.join(f'{t:.2f}' for t in r['Top1_runs'])}" for r in report["rows"]))
    v = report["verdicts"]
    print(f"\n>= {TARGET_SPEEDUP}x faster than ResNet56 at <= {TARGET_POINTS} point below its "
          f"{v['speedup_target']['resnet56_top1']:.2f}%: {'MET by ' + ', '.join(v['speedup_target']['models']) if v['speedup_target']['met'] else 'NOT met'}")
    noise = v["seed_noise"]
    for ref, winners in v["dominated_by_front"].items():
        named = [w + (" (within seed noise)" if w in noise["dominance_within_noise"][ref] else "") for w in winners]
        print(f"  {ref:<12} dominated by the front: {', '.join(named) if named else 'no'}")
    if noise["top1_sd_points"] is not None:
        print(f"Top1 between fine-tuning seeds: standard deviation {noise['top1_sd_points']:.2f} points "
              f"(pooled); standard error of a difference of two means {noise['margin_se_points']:.2f}")
    if report["budget"]["int8"] or report["budget"].get("int8_searched"):
        met = v["int8_target"]
        print(f"INT8: a searched model >= {INT8_SPEEDUP}x faster than fp32 ResNet56 at <= {TARGET_POINTS} "
              f"point below it: {'MET by ' + ', '.join(met['models']) if met['met'] else 'NOT met'}"
              f"{'; references that reach it: ' + ', '.join(met['references']) if met['references'] else ''}")
    print(f"{report['note']}; {report['test_images']} test images; {report['seconds']:.0f} s in all")


if __name__ == "__main__":
    main()
