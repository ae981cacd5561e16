"""Repeatability of Total_Latency: the same ResNet56 model compiled and timed five times in one process.

Prints each run's Total_Latency (the quiet median: the lowest median of --window consecutive
requests) and its median over all requests with the 95% CI, then max/min of the five of each
(target <= 1.03 on the 2-core development machine). Options let you try other timing settings.

    python benchmarks/bench_repeatability.py [--runs 5] [--threads 0] [--no-pin] [--min-iters N]
        [--min-time S] [--window N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _resnet56 import export, pretrained_resnet56

from pipeline.measure import MeasureOptions, open_engine
from pipeline.messages import Target


def main() -> None:
    defaults = MeasureOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="compilations and timings of the same model")
    parser.add_argument("--precision", default="fp32", help="inference precision (fp32, bf16, int8)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="OpenVINO inference threads (0: its default)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin inference threads to cores")
    parser.add_argument("--min-iters", type=int, default=defaults.min_iters, help="fewest timed requests per run")
    parser.add_argument("--min-time", type=float, default=defaults.min_time_s, help="fewest seconds of timed requests per run")
    parser.add_argument("--window", type=int, default=defaults.quiet_window,
                        help="consecutive requests whose lowest median is the quiet median")
    args = parser.parse_args()
    options = MeasureOptions(threads=args.threads, pin=not args.no_pin, min_iters=args.min_iters,
                             min_time_s=args.min_time, quiet_window=args.window)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export(pretrained_resnet56(), Path(folder) / "resnet56.onnx")
        sample = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
        quiet, medians = [], []
        for run in range(args.runs):
            engine = open_engine(onnx_path, Target(precision=args.precision), options)
            stats = engine.latency(sample)
            quiet.append(stats.quiet_median)
            medians.append(stats.median)
            info = engine.info()
            print(f"run {run + 1}: Total_Latency {stats.quiet_median:.4f} ms (quiet median of "
                  f"{stats.windows} windows)  median of all {stats.median:.4f} ms 95% CI "
                  f"[{stats.ci95_low:.4f}, {stats.ci95_high:.4f}]  p99 {stats.p99:.4f}  "
                  f"n={stats.count}", flush=True)
    print(f"device {info.device_name}, {info.precision} ({info.inference_precision}), threads "
          f"{info.threads}, streams {info.streams}, pinning {info.pinning}, min_iters "
          f"{options.min_iters}, min_time {options.min_time_s} s, window {options.quiet_window}")
    print(f"max/min of the {args.runs} Total_Latency (quiet medians): {max(quiet) / min(quiet):.4f} "
          f"(target <= 1.03)")
    print(f"max/min of the {args.runs} medians of all requests: {max(medians) / min(medians):.4f}")


if __name__ == "__main__":
    main()
