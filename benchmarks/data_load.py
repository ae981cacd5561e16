"""Time the first (decode into an empty cache) and second (from the cache) load of a data set.

Usage: python benchmarks/data_load.py [--data PATH] [--repeat K]
The first load uses a fresh temporary cache folder, deleted afterwards; the default data set is
the shared lossless CIFAR-10 binary version (60,000 images). Aim: second load under 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.data import load_data  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def _timed_load(path: Path, cache_dir: Path) -> tuple[float, int]:
    started = time.perf_counter()
    splits = load_data(path, cache_dir)
    return time.perf_counter() - started, len(splits.train) + len(splits.val) + len(splits.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data set (default: the shared cifar-10-binary.tar.gz)")
    parser.add_argument("--repeat", type=int, default=3, help="number of timed loads from the cache")
    args = parser.parse_args()
    path = Settings.load(data=args.data).data_path
    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as cache_dir:
        seconds, images = _timed_load(path, Path(cache_dir))
        print(f"{path.name}: first load (decode + write cache) {seconds:.2f} s for {images} images "
              f"({images / seconds:.0f} images/s)")
        for run in range(args.repeat):
            seconds, _ = _timed_load(path, Path(cache_dir))
            print(f"second load #{run + 1} (from cache): {seconds:.2f} s")


if __name__ == "__main__":
    main()
