"""How well does the latency model predict architectures it was not fitted on? (issue 16)

Profiles (or loads, with --model-file of an existing file) a latency model of the unpruned
ResNet56 on OpenVINO CPU fp32, then draws --held-out random architectures (width, depth and
round_to; another seed than the profile's) and times each against the unpruned model in short
alternating windows (``pipeline.measure.relative``: the median of per-window ratios, the order
swapped every other window), so that a busy machine hits both alike. The median of pooled chunks
(``macs_vs_latency.interleaved_medians``) was tried first: on the VM at load 10-14 it measured
pruned architectures at 0.13x and 1.22x the unpruned model, so a burst inside one chunk moves it.
Prints the median and 90th-percentile absolute relative error of the prediction, on the ratio to
the unpruned model and in ms, Spearman rho of predicted against measured ratios, and beside them
the noise floor: the unpruned model timed against a second compiled copy of itself the same way.
An existing model of another precision (``edgeprune latency profile --precision int8``) is judged at
its own precision: with int8 every model, the unpruned one too, is quantized (NNCF) on 300 train
images before it is timed.

    python benchmarks/latency_model.py [--model-file runs/lm56.json] [--archs 40] [--held-out 30] [--json]

The absolute figure of an architecture is its ratio times the unpruned model's quietest window
(ms); the prediction's ms are on the profile's scale (its median unpruned Total_Latency), so the
error in ms also holds how much slower or faster the machine ran than during the profile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import numpy as np
from scipy.stats import spearmanr

from pipeline.latency import (build_architecture, export_unpruned, format_summary, load_latency_model,
                              profile_latency, profile_options, random_schedules)
from pipeline.export import export_onnx
from pipeline.measure import MeasureOptions, measure, open_engine
from pipeline.measure.relative import relative_latency
from pipeline.messages import Target
from pipeline.settings import Settings

MODEL = "resnet56_cifar"


def profiled(path: Path, archs: int, seed: int, folder: Path, progress: TextIO) -> object:
    """The latency model in ``path``, profiled in this process first when the file is absent
    (a line per architecture to ``progress``)."""
    if path.is_file():
        return load_latency_model(path)
    target = Target()
    unpruned = export_unpruned(MODEL, folder / "unpruned.onnx")
    options = profile_options(unpruned)
    timed = lambda p: measure(p, target, options=options).to_metrics()  # noqa: E731
    model = profile_latency(MODEL, target, Settings.load(), timed, archs=archs, seed=seed, unpruned_onnx=unpruned,
                            on_progress=lambda line: print(line, file=progress, flush=True))
    model.save(path)
    return model


def alternating(engine, reference, sample: np.ndarray, polls: int, window: int) -> tuple[float, float]:
    """(model ms / reference ms over alternating windows, the reference's quietest window ms)."""
    result = relative_latency(lambda: engine.latency_samples(sample, window),
                              lambda: reference.latency_samples(sample, window), polls, "unpruned")
    return result.ratio, result.reference_ms


def stats(errors: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(errors)), 4), "p90": round(float(np.percentile(errors, 90)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-file", type=Path, default=Path("runs/latency_model_resnet56.json"),
                        help="latency model to judge; profiled and written here when absent")
    parser.add_argument("--archs", type=int, default=40, help="architectures to profile (when profiling)")
    parser.add_argument("--profile-seed", type=int, default=0, help="seed of the profiled architectures (when profiling)")
    parser.add_argument("--held-out", type=int, default=30, help="architectures to judge it on")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the held-out architectures")
    parser.add_argument("--polls", type=int, default=20, help="alternating windows of each model")
    parser.add_argument("--window", type=int, default=50, help="requests per window")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()

    started = time.perf_counter()
    args.model_file.parent.mkdir(parents=True, exist_ok=True)
    options = MeasureOptions(warmup=20)
    sample = np.random.default_rng(0).standard_normal([1, 3, 32, 32], dtype=np.float32)
    rows, noise = [], []
    with tempfile.TemporaryDirectory(prefix="latency-model-bench-") as name:
        folder = Path(name)
        # With --json, stdout is the one JSON object; progress goes to stderr.
        progress = sys.stderr if args.json else sys.stdout
        model = profiled(args.model_file, args.archs, args.profile_seed, folder, progress)
        print(format_summary(model), file=progress, flush=True)
        if model.target.precision == "int8":  # quantized on train images, as the consumer does
            from pipeline.data import load_data

            settings = Settings.load()
            calibration = load_data(settings.data_path, settings.cache_dir).calibration_images()
            options = MeasureOptions(warmup=20, calibration_images=calibration)
        unpruned_path = export_unpruned(MODEL, folder / "reference.onnx")
        unpruned = open_engine(unpruned_path, model.target, options)
        twin = open_engine(unpruned_path, model.target, options)
        held_out = random_schedules(MODEL, args.held_out, args.seed)
        for index, (text, spec) in enumerate(held_out):
            if index % 5 == 0:
                noise.append(abs(alternating(twin, unpruned, sample, args.polls, args.window)[0] - 1.0))
            path = export_onnx(build_architecture(MODEL, text), folder / "arch.onnx").path
            engine = open_engine(path, model.target, options)
            ratio, reference_ms = alternating(engine, unpruned, sample, args.polls, args.window)
            arch_ms = ratio * reference_ms
            predicted = model.predict_onnx(path)
            row = {"index": index, **spec, "measured_ms": arch_ms, "unpruned_ms": reference_ms,
                   "measured_ratio": ratio, "predicted_ms": predicted,
                   "predicted_ratio": predicted / model.reference_ms}
            rows.append(row)
            print(f"arch {index + 1}/{len(held_out)}: measured {row['measured_ratio']:.3f}x "
                  f"({arch_ms:.3f} ms), predicted {row['predicted_ratio']:.3f}x ({predicted:.3f} ms)",
                  file=progress, flush=True)
    ratio_errors = [abs(r["predicted_ratio"] / r["measured_ratio"] - 1.0) for r in rows]
    ms_errors = [abs(r["predicted_ms"] / r["measured_ms"] - 1.0) for r in rows]
    rho = spearmanr([r["predicted_ratio"] for r in rows], [r["measured_ratio"] for r in rows]).statistic
    figures = {
        "held_out": len(rows), "ratio_error": stats(ratio_errors), "ms_error": stats(ms_errors),
        "spearman_rho": round(float(rho), 4), "noise_floor": stats(noise),
        "precision": model.target.precision, "fit": model.to_dict()["fit"],
        "simd_block": model.simd_block, "reference_ms": model.reference_ms,
        "machine": f"{platform.node()} ({os.cpu_count()} CPU cores)", "cpu": model.fit.device_name,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "seconds": round(time.perf_counter() - started, 1), "rows": rows,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{len(rows)} held-out random ResNet56 architectures (0-12 blocks removed, 0-60% conv1 filters "
          f"per stage, round_to 1/4/8/16), OpenVINO CPU {model.target.precision}, {args.polls} alternating windows of "
          f"{args.window} requests with the unpruned model")
    print(f"abs. relative error on the ratio to the unpruned model: median {figures['ratio_error']['median']:.1%}"
          f", p90 {figures['ratio_error']['p90']:.1%}; in ms: median {figures['ms_error']['median']:.1%}, "
          f"p90 {figures['ms_error']['p90']:.1%}; Spearman rho {rho:.3f}")
    print(f"noise floor (unpruned vs a second copy of itself, {len(noise)} times): median "
          f"{figures['noise_floor']['median']:.1%}, p90 {figures['noise_floor']['p90']:.1%}")
    print(f"machine: {figures['machine']}, {figures['cpu']}; date: {figures['date']}; "
          f"{figures['seconds']:.0f} s")


if __name__ == "__main__":
    main()
