"""Time each stage of `edgeprune run` on the hand-picked ResNet56 schedule (full shared data).

Usage: python benchmarks/run_stages.py [--epochs 0] [--repeat 2] [extra edgeprune run flags...]

The first repeat may include decoding the data set into the cache; later repeats show the steady
state. Aim (issue 2): the whole --epochs 0 run, start to end, in under 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default=str(REPO / "schedules" / "resnet56_filter_rank.yaml"),
                        help="schedule of the timed run")
    parser.add_argument("--epochs", type=int, default=0, help="retraining epochs of the timed run")
    parser.add_argument("--repeat", type=int, default=2, help="runs to time (the first may decode the data)")
    args, extra = parser.parse_known_args()
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "edgeprune", "run", "--schedule", args.schedule,
                   "--epochs", str(args.epochs), "--out", str(out), "--json", *extra]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"run failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            record = json.loads(proc.stdout)
        stages = record["stage_seconds"]
        print(f"repeat {i + 1}: wall {wall:.2f} s (process start to exit); {platform.node()}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"{time.strftime('%Y-%m-%d %H:%M')}")
        for name, seconds in stages.items():
            print(f"  {name:<16} {seconds:7.2f} s")
        accounted = sum(stages.values())
        print(f"  {'(imports, CLI)':<16} {wall - accounted:7.2f} s")
        m = record["metrics"]
        print(f"  Top1 deployed {m.get('Top1')} on {m.get('eval_count')} images  Total_Latency "
              f"{m.get('Total_Latency')} ms  MACs {m.get('macs')}  speed-up vs unpruned "
              f"{record.get('speedup_vs_unpruned')}  retrain hint {record.get('retrain_hint')}")


if __name__ == "__main__":
    main()
