"""Does the reference kernel see the machine's slow periods? It and the model, timed in turns.

For --seconds, alternates ~10 ms of the reference kernel (pipeline/measure/interference.py) with
~0.2 s of the pretrained ResNet56's synchronous requests, and prints both series relative to their
best, their correlation, and the share of time the kernel called the machine disturbed (slowdown
above 1.15). A high correlation is what lets a measurement wait for the slow period to end.

    python benchmarks/interference.py [--seconds 90]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _resnet56 import export, pretrained_resnet56
from tqdm import tqdm

from pipeline.measure import MeasureOptions, open_engine
from pipeline.measure.interference import DISTURBED, ReferenceKernel
from pipeline.messages import Target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long to alternate the two")
    args = parser.parse_args()
    kernel = ReferenceKernel()
    options = MeasureOptions(warmup=20, min_iters=100, min_time_s=0.2)
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(export(pretrained_resnet56(), Path(folder) / "resnet56.onnx"),
                             Target(), options)
        sample = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
        reference, model = [], []
        end = time.monotonic() + args.seconds
        with tqdm(total=round(args.seconds), unit="s", desc="timing in turns") as bar:
            while time.monotonic() < end:
                reference.append(kernel.time_ms())
                model.append(float(np.median(engine.latency_samples(sample))))
                bar.n = min(round(args.seconds), round(args.seconds - (end - time.monotonic())))
                bar.refresh()
    ref = np.asarray(reference) / min(reference)
    mod = np.asarray(model) / min(model)
    print("reference / its best:", " ".join(f"{v:.2f}" for v in ref))
    print("model median / its best:", " ".join(f"{v:.2f}" for v in mod))
    print(f"correlation {np.corrcoef(ref, mod)[0, 1]:.3f} over {len(ref)} turns; disturbed "
          f"(reference > {DISTURBED}x) {np.mean(ref > DISTURBED):.0%} of turns, model then "
          f"{np.median(mod[ref > DISTURBED]) if (ref > DISTURBED).any() else float('nan'):.2f}x "
          f"its best, otherwise {np.median(mod[ref <= DISTURBED]):.2f}x")


if __name__ == "__main__":
    main()
