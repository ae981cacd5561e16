"""Shared set-up of the queue benchmarks: arguments, an exported model, a throw-away queue."""

from __future__ import annotations

import argparse
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.queue import JobQueue, connect  # noqa: E402


def parse_args(doc: str, jobs: int, jobs_help: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL.")
    parser.add_argument("--jobs", type=int, default=jobs, help=jobs_help)
    return parser.parse_args()


def export_model(name: str, path: Path) -> Path:
    """``name`` with random weights (only the file matters here) exported to ONNX at ``path``."""
    import torch

    from pipeline.models import create_model

    torch.onnx.export(create_model(name).eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    return path


@contextmanager
def scratch_queue(url: str, label: str) -> Iterator[JobQueue]:
    """A queue under a fresh key prefix, deleted afterwards."""
    client = connect(url)
    prefix = f"edgeprune-{label}-{uuid.uuid4().hex[:8]}"
    try:
        yield JobQueue(client, prefix)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
