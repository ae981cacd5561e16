"""MACs against measured time: unpruned vs hand-picked-pruned ResNet56, fp32 / bf16 / int8.

The pruned model is the pretrained ResNet56 with schedules/resnet56_filter_rank.yaml applied one
shot (no retraining: speed does not depend on the weights). Both models are timed in alternating
chunks (A, B, A, B, ...) and each model's chunks pooled, so that load from other processes on a
shared machine hits both alike and the latency ratio stays meaningful.

    python benchmarks/macs_vs_latency.py [--rounds 6] [--chunk-time 0.5] [--precisions fp32,bf16,int8]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from _resnet56 import export, pretrained_resnet56

from pipeline.data import load_data, to_tensor_batch
from pipeline.measure import MeasureOptions, onnx_facts, open_engine, summarize
from pipeline.messages import Target
from pipeline.pruning import load_schedule, prune_one_shot
from pipeline.settings import Settings

SCHEDULE = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_filter_rank.yaml"


def interleaved_medians(engines: list, sample: np.ndarray, rounds: int) -> list[float]:
    """Median latency of each engine over ``rounds`` alternating timing chunks."""
    pooled: list[list[float]] = [[] for _ in engines]
    for _ in range(rounds):
        for times, engine in zip(pooled, engines):
            times.extend(engine.latency_samples(sample))
    return [summarize(times).median for times in pooled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating timing chunks of each model")
    parser.add_argument("--chunk-time", type=float, default=0.5, help="seconds of requests per chunk")
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated precisions to measure")
    args = parser.parse_args()
    settings = Settings.load()
    unpruned = pretrained_resnet56(settings)
    pruned = copy.deepcopy(unpruned)
    prune_one_shot(pruned, load_schedule(SCHEDULE), torch.zeros(1, 3, 32, 32))
    train = load_data(settings.data_path, settings.cache_dir).train
    pick = np.sort(np.random.default_rng(0).permutation(len(train.labels))[:300])
    options = MeasureOptions(warmup=50, min_iters=100, min_time_s=args.chunk_time,
                             calibration_images=to_tensor_batch(train.images[pick]))
    sample = to_tensor_batch(train.images[:1])
    with tempfile.TemporaryDirectory() as folder:
        paths = [export(unpruned, Path(folder) / "unpruned.onnx"),
                 export(pruned.eval(), Path(folder) / "pruned.onnx")]
        macs = [onnx_facts(path).macs for path in paths]
        print(f"MACs: unpruned {macs[0]:,}  pruned {macs[1]:,}  ratio {macs[0] / macs[1]:.3f}x")
        print(f"{'precision':<10} {'unpruned ms':>12} {'pruned ms':>10} {'latency ratio':>14} "
              f"{'MAC ratio':>10}  (ran as)")
        for precision in args.precisions.split(","):
            engines = [open_engine(path, Target(precision=precision), options) for path in paths]
            medians = interleaved_medians(engines, sample, args.rounds)
            ran_as = engines[0].info().runtime_precisions
            print(f"{precision:<10} {medians[0]:>12.4f} {medians[1]:>10.4f} "
                  f"{medians[0] / medians[1]:>13.3f}x {macs[0] / macs[1]:>9.3f}x  {ran_as}",
                  flush=True)


if __name__ == "__main__":
    main()
