"""Recovery after pruning, with and without knowledge distillation (issue 15).

Two pruned ResNet56 of about the same OpenVINO speed-up: Distiller's hand-picked filter schedule
(0.84-0.89x of ResNet56's latency, issue 15) and a depth-pruned one (latency is nearly
proportional to the number of residual blocks: 4 of 27 removed is 0.85x; blocks ranked by the
``sensitivity`` criterion). Each is retrained with the same budget with and without distillation
from the default teacher (the unpruned ResNet56 fine-tuned on the same data with the same
budget, cached); Top1 after each epoch and seconds are printed. Adaptive BN before retraining.

    python benchmarks/kd_recovery.py [--epochs 2] [--steps 100] [--kd-weight 0.7]

Data: the settings' default, the lossless CIFAR-10 binary version (EDGEPRUNE_DATA changes it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
from pathlib import Path

import torch

from _resnet56 import budget_arguments, pretrained_resnet56

from pipeline.batchnorm import Calibration, recalibrate_bn
from pipeline.data import DataSplits, load_data
from pipeline.distill import Distillation
from pipeline.pruning import load_schedule, prune_one_shot
from pipeline.models import count_macs_params
from pipeline.pruning.blocks import identity_blocks, remove_blocks
from pipeline.settings import Settings
from pipeline.teacher import cached_teacher, file_identity
from pipeline.training import TrainConfig, evaluate, train

HAND_PICKED = Path(__file__).resolve().parent.parent / "schedules" / "resnet56_filter_rank.yaml"


def depth_schedule(removed: int, blocks: list[str]) -> str:
    """Remove ``removed`` of ``blocks`` (all of them when the counts are equal: the blocks are given)."""
    fraction = removed / len(blocks) + 1e-6 if removed < len(blocks) else 0.0
    return ("version: 1\npruners:\n  blocks:\n    class: ResidualBlockPruner\n    criterion: sensitivity\n"
            f"    desired_sparsity: {fraction:.6f}\n    blocks: [{', '.join(blocks)}]\n"
            "policies:\n  - pruner: {instance_name: blocks}\n    epochs: [0]\n")


def pruned_model(schedule: str, calibration: Calibration, given_blocks: list[str]) -> tuple[torch.nn.Module, int]:
    """The pretrained ResNet56 pruned by ``schedule`` (or without ``given_blocks``), BN re-estimated; its MACs."""
    model = pretrained_resnet56()
    if given_blocks:
        remove_blocks(model, given_blocks)
        macs = count_macs_params(model)[0]
    else:
        macs = prune_one_shot(model, load_schedule(schedule), calibration=calibration).macs_after
    recalibrate_bn(model, calibration.images)
    return model, macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="retraining epochs of each model")
    budget_arguments(parser, steps=100, batch_size=64, eval_images=1000)
    parser.add_argument("--kd-weight", type=float, default=0.7, help="distillation weight w of the KD runs")
    parser.add_argument("--kd-temperature", type=float, default=4.0, help="distillation temperature T")
    parser.add_argument("--blocks-removed", type=int, default=4,
                        help="residual blocks the depth-pruned model loses (sensitivity-ranked)")
    parser.add_argument("--blocks", default="", help="comma-separated blocks to remove instead of ranking "
                        "them (e.g. the first of block_criteria.py's sensitivity ranking)")
    args = parser.parse_args()

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = Settings.load()
    full = load_data(settings.data_path, settings.cache_dir)
    # Top1 after each epoch on the first test images: train() validates on ``val``.
    data = DataSplits(train=full.train, val=full.test.head(args.eval_images), test=full.test, classes=full.classes)
    calibration = Calibration.from_split(data.train, 512)
    budget = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_steps_per_epoch=args.steps)
    teacher = cached_teacher(pretrained_resnet56, data, budget, settings.cache_dir, "resnet56_cifar",
                             {"benchmark": "kd_recovery", "data": file_identity(settings.data_path)})
    print(f"teacher (unpruned ResNet56 fine-tuned with the same budget): Top1 {evaluate(teacher, data.val).top1:.1f}%")
    blocks = identity_blocks(pretrained_resnet56())
    given = [b for b in args.blocks.split(",") if b]
    models = {"hand-picked filters": (HAND_PICKED.read_text(), []),
              f"depth: {len(given) or args.blocks_removed} blocks removed":
                  (depth_schedule(args.blocks_removed, blocks), given)}
    print(f"budget: {args.epochs} epochs x {args.steps} steps x {args.batch_size} images, lr {args.lr}; "
          f"KD w={args.kd_weight} T={args.kd_temperature}; Top1 on the first {len(data.val)} test images "
          f"of {settings.data_path.name}")
    for name, (schedule, given_blocks) in models.items():
        pruned, macs = pruned_model(schedule, calibration, given_blocks)
        start = evaluate(pruned, data.val).top1
        for weight in (0.0, args.kd_weight):
            model = copy.deepcopy(pruned)
            loss_fn = Distillation(teacher, weight, args.kd_temperature) if weight else None
            done = train(model, data, budget, loss_fn=loss_fn)
            per_epoch = ", ".join(f"{a.top1:.1f}" for a in done.history)
            print(f"{name:<26} KD {'on ' if weight else 'off'}  MACs {macs / 1e6:6.1f}M  "
                  f"adaptive-BN {start:.1f}% -> per epoch {per_epoch} %  ({done.seconds:.0f} s, "
                  f"{done.seconds / max(1, done.epochs_run):.0f} s/epoch)", flush=True)
    print(f"machine: {platform.node()} ({os.cpu_count()} CPU cores, shared); "
          f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
