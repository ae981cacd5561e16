"""Time `pipeline.training.evaluate` of the pretrained ResNet56 on the full test split.

Usage: python benchmarks/eval_speed.py [--data PATH] [--batch-size N] [--repeat K] [--precision fp32,bf16]
Prints Top1/Top5 (on the default lossless CIFAR-10 test split, 10,000 images: 93.39% Top1 for
this model) and the wall time of each evaluation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.data import load_data  # noqa: E402
from pipeline.models import create_model, default_checkpoint, load_checkpoint  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.training import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data set (default: the shared cifar-10-binary.tar.gz)")
    parser.add_argument("--model", default="resnet56_cifar", help="model name with a pretrained checkpoint")
    parser.add_argument("--batch-size", type=int, default=250, help="evaluation batch size")
    parser.add_argument("--repeat", type=int, default=1, help="timed evaluations per precision")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    args = parser.parse_args()
    settings = Settings.load(data=args.data)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    splits = load_data(settings.data_path, settings.cache_dir)
    model = create_model(args.model)
    load_checkpoint(model, default_checkpoint(args.model, settings))
    device = settings.torch_device()
    print(f"{args.model} on {len(splits.test)} test images of {settings.data_path.name}, device {device}, "
          f"{torch.get_num_threads()} torch threads, batch size {args.batch_size}")
    for precision in args.precision.split(","):
        for _ in range(args.repeat):
            started = time.perf_counter()
            accuracy = evaluate(model, splits.test, args.batch_size, device, precision)
            seconds = time.perf_counter() - started
            print(f"{precision}: {seconds:.2f} s ({len(splits.test) / seconds:.0f} images/s)  "
                  f"Top1 {accuracy.top1:.2f}%  Top5 {accuracy.top5:.2f}%  loss {accuracy.loss:.4f}  "
                  f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
