"""Soak: 200 jobs from 4 producer processes while the consumer is SIGKILLed twice.

Prints how many jobs got no result (lost) and how many got more than one stored result
(duplicated); both must be 0. The consumer is a real ``edgeprune consumer`` process with the
light ``--check-only`` work (fetch, verify, parse the model; no measurement), so the soak tests
the queue, not OpenVINO, and runs in well under a minute. Each kill is sent when the queue shows
the consumer holding a job; with work this light the job sometimes finishes just before the
signal lands, so the "reclaimed" count (jobs a kill orphaned, taken over by the restarted
consumer after the visibility timeout) may be below the number of kills.

    python benchmarks/queue_soak.py [--redis redis://127.0.0.1:6379/0] [--jobs 200]
"""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _queue_bench import REPO, export_model, parse_args, scratch_queue

from pipeline.messages import ArtifactRef, Job
from pipeline.queue import JobQueue, connect

PRODUCERS = 4
KILLS = 2
VISIBILITY_S = 2.0


def produce(url: str, prefix: str, onnx: str, count: int, timeout: float) -> None:
    """One producer: submit ``count`` jobs, then wait for each one's result."""
    queue = JobQueue(connect(url), prefix)
    jobs = [queue.submit(Job(job_id=uuid.uuid4().hex, run_id=f"soak-{i}",
                             artifact=ArtifactRef(uri="", sha256="", size=0)), Path(onnx))
            for i in range(count)]
    for job in jobs:
        queue.wait_result(job.job_id, timeout=timeout)


def start_consumer(url: str, prefix: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeprune", "consumer", "--redis", url, "--prefix", prefix,
         "--check-only", "--name", name, "--visibility-timeout", str(VISIBILITY_S)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_mid_job(queue: JobQueue, consumer: subprocess.Popen, name: str, after: int) -> bool:
    """SIGKILL ``consumer`` once ``after`` results are stored and it holds a job; False if the
    jobs ran out first."""
    while True:
        status = queue.status()
        holding = any(j["consumer"] == name for t in status["targets"].values()
                      for j in t["in_flight_jobs"])
        if status["counters"].get("ok", 0) >= after and holding:
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            return True
        if status["counters"].get("ok", 0) >= after and status["waiting"] == 0:
            return False
        time.sleep(0.001)


def main() -> None:
    args = parse_args(__doc__, 200, "Jobs in all (split over 4 producers).")
    start = time.monotonic()
    with scratch_queue(args.redis, "soak") as queue, tempfile.TemporaryDirectory() as tmp:
        onnx = export_model("resnet20_cifar", Path(tmp) / "resnet20.onnx")
        spawn = multiprocessing.get_context("spawn")
        producers = [spawn.Process(target=produce, args=(args.redis, queue.keys.prefix, str(onnx),
                                                         args.jobs // PRODUCERS, 300))
                     for _ in range(PRODUCERS)]
        for producer in producers:
            producer.start()
        kills = 0
        consumer = start_consumer(args.redis, queue.keys.prefix, "soak-0")
        try:
            for k in range(1, KILLS + 1):
                if kill_mid_job(queue, consumer, f"soak-{k - 1}", after=k * args.jobs // (KILLS + 1)):
                    kills += 1
                consumer = start_consumer(args.redis, queue.keys.prefix, f"soak-{k}")
            for producer in producers:
                producer.join()
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait()
        status = queue.status()
        job_ids = [k.decode().rsplit(":", 1)[1]
                   for k in queue.client.scan_iter(match=queue.keys.result("*"))]
        finished = {job_id for job_id in job_ids if queue.result(job_id).ok}
    counters = status["counters"]
    submitted = counters.get("submitted", 0)
    lost = submitted - len(finished)
    # Each successful SET NX is one stored result: more than one per job would be a duplicate.
    duplicated = counters.get("ok", 0) - len(finished)
    print(f"{submitted} jobs from {PRODUCERS} producers, consumer SIGKILLed {kills} times, "
          f"{time.monotonic() - start:.1f} s: lost {lost}, duplicated {duplicated} (targets 0 and 0); "
          f"{len(job_ids)} results stored, {counters.get('reclaimed', 0)} jobs orphaned by the kills "
          "reclaimed, "
          f"{counters.get('duplicates', 0)} late second results ignored, "
          f"{status['dead_lettered']} dead-lettered")


if __name__ == "__main__":
    main()
