"""Cross-check of Total_Latency against OpenVINO's own benchmark_app on the same model and settings.

Both measure the pretrained ResNet56 at batch 1, LATENCY hint, one stream, the given precision,
alternately (ours, benchmark_app, ours, ...) so that load on a shared machine hits both alike.
Prints both medians per round and the ratio of their medians.

    python benchmarks/benchmark_app_crosscheck.py [--rounds 3] [--precision fp32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from _resnet56 import export, pretrained_resnet56

from pipeline.measure import MeasureOptions, open_engine
from pipeline.measure.openvino_backend import PRECISION_HINTS
from pipeline.messages import Target


def benchmark_app_median(onnx_path: Path, precision: str, seconds: float) -> float:
    """benchmark_app's median latency (ms) for the same settings as our latency model.

    benchmark_app refuses -nstreams with a hint; the LATENCY hint gives one stream here anyway.
    """
    command = [shutil.which("benchmark_app") or "benchmark_app", "-m", str(onnx_path), "-d", "CPU",
               "-hint", "latency", "-api", "sync", "-shape", "[1,3,32,32]",
               "-t", str(max(1, round(seconds))), "-infer_precision", PRECISION_HINTS[precision]]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Median:\s+([\d.]+) ms", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ours and benchmark_app")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="inference precision of both")
    parser.add_argument("--seconds", type=int, default=3, help="seconds of timing per measurement")
    args = parser.parse_args()
    options = MeasureOptions(min_time_s=args.seconds)
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export(pretrained_resnet56(), Path(folder) / "resnet56.onnx")
        sample = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
        for round_ in range(args.rounds):
            ours.append(open_engine(onnx_path, Target(precision=args.precision), options)
                        .latency(sample).quiet_median)
            theirs.append(benchmark_app_median(onnx_path, args.precision, args.seconds))
            print(f"round {round_ + 1}: edgeprune {ours[-1]:.4f} ms  benchmark_app {theirs[-1]:.4f} ms"
                  f"  ratio {ours[-1] / theirs[-1]:.3f}", flush=True)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"median of rounds: edgeprune {ours_median:.4f} ms, benchmark_app {theirs_median:.4f} ms, "
          f"ratio edgeprune/benchmark_app {ours_median / theirs_median:.3f} ({args.precision})")


if __name__ == "__main__":
    main()
