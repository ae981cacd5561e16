"""Median enqueue→receive time of a 3.4 MB ONNX job over the real Redis on loopback.

Enqueue→receive: from building the job in the producer to a consumer in another process holding
the model file, size- and sha256-checked, on disk. The producer waits for each job's result
before sending the next, so the consumer is always blocked waiting when a job arrives.

    python benchmarks/queue_roundtrip.py [--redis redis://127.0.0.1:6379/0] [--jobs 30]
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from _queue_bench import export_model, parse_args, scratch_queue

from pipeline.messages import ArtifactRef, Job, Result, Target
from pipeline.queue import JobQueue, connect
from pipeline.status import JobStatus

TARGET = Target()


def consume(url: str, prefix: str, jobs: int) -> None:
    """Receive ``jobs`` jobs; report each one's enqueue→receive milliseconds as its result."""
    queue = JobQueue(connect(url), prefix)
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(jobs):
            claimed = None
            while claimed is None:
                claimed = queue.claim(TARGET, "bench", block_s=5)
            queue.fetch_artifact(claimed, Path(scratch)).unlink()
            received_ms = (time.time() - claimed.job.created_at) * 1000
            job = claimed.job
            queue.complete(claimed, Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.OK,
                                           metrics={"receive_ms": received_ms}))


def main() -> None:
    args = parse_args(__doc__, 30, "Jobs to time.")
    times = []
    with scratch_queue(args.redis, "bench") as queue, tempfile.TemporaryDirectory() as tmp:
        # ResNet56 exports to about 3.4 MB.
        onnx = export_model("resnet56_cifar", Path(tmp) / "resnet56.onnx")
        consumer = multiprocessing.get_context("spawn").Process(
            target=consume, args=(args.redis, queue.keys.prefix, args.jobs + 1))
        consumer.start()
        try:
            for i in range(args.jobs + 1):
                job = Job(job_id=uuid.uuid4().hex, run_id=f"bench-{i}",
                          artifact=ArtifactRef(uri="", sha256="", size=0), target=TARGET)
                queue.submit(job, onnx)
                result = queue.wait_result(job.job_id, timeout=60)
                if i:  # the first job also pays for the consumer's start-up
                    times.append(result.metrics["receive_ms"])
        finally:
            consumer.join(timeout=30)
        size_mb = onnx.stat().st_size / 1e6
    print(f"enqueue→receive of a {size_mb:.2f} MB ONNX job over Redis on loopback, "
          f"{len(times)} jobs: median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms, max {max(times):.1f} ms (target ≤ 50 ms)")


if __name__ == "__main__":
    main()
