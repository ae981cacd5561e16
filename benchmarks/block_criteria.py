"""Which residual blocks to remove? ResidualBlockPruner's criteria against random choice (issue 15).

The pretrained ResNet56 with 6 and 12 of its 25 identity blocks removed, chosen by each
criterion (``sensitivity``, ``l1_bn2``, and ``random`` with several seeds): Top1 on the first
2,000 test images without retraining, raw and after re-estimating BatchNorm statistics
(adaptive BN). Then the adaptive-BN Top1 of one pruned model against the number of train images
used to re-estimate, which chose ``--bn-recalibrate``'s default.

    python benchmarks/block_criteria.py [--random-seeds 3]

Data: the settings' default, the lossless CIFAR-10 binary version (EDGEPRUNE_DATA changes it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import time

import torch

from _resnet56 import pretrained_resnet56

from pipeline.batchnorm import Calibration, recalibrate_bn
from pipeline.data import load_data
from pipeline.pruning.blocks import identity_blocks, rank_blocks, remove_blocks
from pipeline.settings import Settings
from pipeline.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--random-seeds", type=int, default=3, help="random choices of blocks to compare with")
    parser.add_argument("--eval-images", type=int, default=2000, help="first N test images for Top1")
    parser.add_argument("--recalibrate", type=int, default=512, help="train images for adaptive BN")
    parser.add_argument("--counts", default="6,12", help="blocks removed")
    parser.add_argument("--sizes", default="64,128,256,512,1024", help="recalibration sizes to compare")
    args = parser.parse_args()

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = Settings.load()
    data = load_data(settings.data_path, settings.cache_dir)
    test = data.test.head(args.eval_images)
    calibration = Calibration.from_split(data.train, max(args.recalibrate, *map(int, args.sizes.split(","))))
    model = pretrained_resnet56()
    blocks = identity_blocks(model)
    criteria = [("sensitivity", 0), ("l1_bn2", 0)] + [("random", seed) for seed in range(args.random_seeds)]
    print(f"pretrained ResNet56: Top1 {evaluate(model, test).top1:.1f}% on {len(test)} test images "
          f"of {settings.data_path.name}")
    print(f"{'criterion':<14} {'removed':>7} {'raw Top1':>9} {'adaptive-BN Top1':>17}  rank s")
    for name, seed in criteria:
        started = time.perf_counter()
        ranked = rank_blocks(model, blocks, name, calibration, seed)
        seconds = time.perf_counter() - started
        for count in map(int, args.counts.split(",")):
            pruned = copy.deepcopy(model)
            remove_blocks(pruned, ranked[:count])
            raw = evaluate(pruned, test).top1
            recalibrate_bn(pruned, calibration.images[: args.recalibrate])
            adaptive = evaluate(pruned, test).top1
            label = name if name != "random" else f"random s{seed}"
            print(f"{label:<14} {count:>7} {raw:>8.1f}% {adaptive:>16.1f}%  {seconds:6.1f}  {', '.join(ranked[:count])}",
                  flush=True)
    ranked = rank_blocks(model, blocks, "random", calibration, 0)
    pruned = copy.deepcopy(model)
    remove_blocks(pruned, ranked[:6])
    for size in map(int, args.sizes.split(",")):
        probe = copy.deepcopy(pruned)
        recalibrate_bn(probe, calibration.images[:size])
        print(f"adaptive BN on {size:>5} train images (6 random blocks removed, seed 0): "
              f"Top1 {evaluate(probe, test).top1:.1f}%", flush=True)
    print(f"machine: {platform.node()} ({os.cpu_count()} CPU cores, shared); "
          f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
