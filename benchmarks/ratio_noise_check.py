"""Does a sweep rank the models, not the machine's mood? The same sweep quiet and beside a CPU burner.

Runs one small grid sweep (`edgeprune sweep` over the base network, ResNet20 to ResNet56, each
pruned by schedules/resnet20_filter_rank.yaml, no retraining; every trial timed against the unpruned
ResNet56, the sweep's --model) twice into fresh folders: once as the machine is, once with a process burning --burn-cores cores
during the first half of its trials. Every trial records Relative_Latency, its request time over
the unpruned network's, the two timed in alternating windows within its own measurement. The check
passes when both runs rank the architectures in the same order by Relative_Latency and every
architecture's speed-up (1 / Relative_Latency) agrees within --tolerance (5%). It prints both
rankings, the speed-ups side by side and PASS or FAIL (exit 0 or 1).

    python benchmarks/ratio_noise_check.py                 # the check (4 trials per run)
    python benchmarks/ratio_noise_check.py --smoke         # 2 trials per run, short timing: a smoke test

Run it on a machine nobody else uses at the time: the quiet run is only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.status import TrialStatus

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ROOT / "schedules" / "resnet20_filter_rank.yaml"

GRID = """
name: ratio-noise-check
method: grid
metric: {{name: Relative_Latency, goal: minimize}}
parameters:
  model: {{values: {models}}}
  filter_pruner_50_desired_sparsity: {{value: 0.5}}
  epochs: {{value: 0}}
"""
#: Base networks far enough apart in latency (about 1.3x per step) that a fair ranking is unambiguous.
FULL = ["resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar"]
SMOKE = ["resnet20_cifar", "resnet56_cifar"]


def _burn(stop: Any) -> None:
    """Keep one core busy until ``stop`` is set."""
    x = 1.0
    while not stop.is_set():
        for _ in range(100_000):
            x = x * 1.0000001 % 7.0


def _finished(out: Path) -> int:
    from pipeline.errors import UserError
    from pipeline.search.storage import load_trials

    try:
        return sum(1 for r in load_trials(out) if r.status != TrialStatus.RUNNING)
    except UserError:  # the study is not created yet
        return 0


def run_sweep(sweep: Path, out: Path, trials: int, smoke: bool, burn_cores: int) -> list:
    """Run the sweep into ``out``; with ``burn_cores``, burners run until half its trials ended."""
    from pipeline.search.storage import load_trials

    command = [sys.executable, "-m", "edgeprune", "sweep", str(sweep), "--trials", str(trials),
               "--out", str(out), "--schedule", str(SCHEDULE), "--model", "resnet56_cifar",
               "--no-baselines", "--eval-limit", "200" if smoke else "1000"]
    if smoke:
        command.append("--fast-measure")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweep_process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
               for _ in range(burn_cores)]
    for burner in burners:
        burner.start()
    try:
        while sweep_process.poll() is None:
            if burners and not stop.is_set() and _finished(out) >= trials // 2:
                stop.set()
                print(f"  burner stopped after {_finished(out)} of {trials} trials", flush=True)
            time.sleep(1.0)
    finally:
        stop.set()
        for burner in burners:
            burner.join()
    if sweep_process.returncode:
        raise SystemExit(f"the sweep into {out} failed (exit {sweep_process.returncode})")
    return load_trials(out)


def _key(record) -> str:
    return ", ".join(f"{k.removesuffix('_desired_sparsity')}={v}" for k, v in sorted(record.params.items())
                     if k != "epochs")


def speedups(records: list) -> dict[str, float]:
    """Architecture -> 1 / Relative_Latency, for the trials that have one."""
    return {_key(r): 1.0 / r.metrics["Relative_Latency"] for r in records
            if isinstance(r.metrics.get("Relative_Latency"), (int, float))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 trials per run, short timing")
    parser.add_argument("--burn-cores", type=int, default=1, help="cores the burner keeps busy")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="largest relative difference of a speed-up between the runs")
    args = parser.parse_args()
    models = SMOKE if args.smoke else FULL
    trials = len(models)
    with tempfile.TemporaryDirectory(prefix="ratio-noise-") as folder:
        sweep = Path(folder) / "grid.yaml"
        sweep.write_text(GRID.format(models=models))
        print(f"quiet run: {trials} trials", flush=True)
        quiet = speedups(run_sweep(sweep, Path(folder) / "quiet", trials, args.smoke, 0))
        print(f"loaded run: {trials} trials, {args.burn_cores} core(s) burning during the first half",
              flush=True)
        loaded = speedups(run_sweep(sweep, Path(folder) / "loaded", trials, args.smoke,
                                    args.burn_cores))
    order_quiet = sorted(quiet, key=quiet.get, reverse=True)
    order_loaded = sorted(loaded, key=loaded.get, reverse=True)
    print("\nranking, fastest first (speed-up = 1 / Relative_Latency over unpruned ResNet56):")
    width = max(len(k) for k in [*quiet, "quiet"]) + 12
    print("quiet".ljust(width) + "loaded")
    for a, b in zip(order_quiet, order_loaded):
        print(f"{a} {quiet[a]:.3f}x".ljust(width) + f"{b} {loaded[b]:.3f}x")
    differences = {k: abs(loaded[k] - quiet[k]) / quiet[k] for k in quiet if k in loaded}
    print("\nspeed-up quiet / loaded / difference:")
    for key in order_quiet:
        print(f"  {key}: {quiet[key]:.3f}x / {loaded.get(key, float('nan')):.3f}x / "
              f"{differences.get(key, float('nan')):.1%}")
    same_order = order_quiet == order_loaded and len(quiet) == trials
    close = len(differences) == trials and max(differences.values()) <= args.tolerance
    print(f"\nsame order: {same_order}; largest difference {max(differences.values(), default=float('nan')):.1%} "
          f"(tolerance {args.tolerance:.0%})")
    print("PASS" if same_order and close else "FAIL")
    sys.exit(0 if same_order and close else 1)


if __name__ == "__main__":
    main()
