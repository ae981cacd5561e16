"""Issue 31's queue reproducers against the real Redis: forged results, signing, a hijacked job id,
entries that crashed the consumer, and issue 36's per-job time limit.

Attackers write with redis-py straight into the queue's keys (SET of a result, XADD of a job
entry); producers and consumers are the real ``JobQueue``/``Worker`` code or ``edgeprune``
processes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from test_queue_security import artifact, dead_reasons, job_message

from pipeline.messages import ArtifactRef, Job, Result, Target
from pipeline.queue import JobQueue, QueueConfig, Worker, check_only, connect
from pipeline.queue.signing import signed_json
from pipeline.status import JobStatus

REPO = Path(__file__).resolve().parent.parent
TARGET = Target()
SECRET = b"k" * 32
SCHEDULE = REPO / "schedules" / "resnet20_filter_rank.yaml"


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


def new_job(run_id: str = "real-run") -> Job:
    return Job(job_id=uuid.uuid4().hex, run_id=run_id, eval_split="",
               artifact=ArtifactRef(uri="", sha256="", size=0))


def result_body(job_id: str, run_id: str, **fields: Any) -> dict[str, Any]:
    """A result message as an attacker writes it: plausible unless ``fields`` say otherwise."""
    return {"job_id": job_id, "run_id": run_id, "status": "ok",
            "metrics": {"Top1": 99.9, "Total_Latency": 0.001, "Throughput": 1e6}, **fields}


def serve(queue: JobQueue, **kwargs: Any) -> Worker:
    worker = Worker(queue, TARGET, check_only, name="c1")
    worker.run(threading.Event(), idle_exit=0.5, block_s=0.1, **kwargs)
    return worker


def edgeprune(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "edgeprune", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def consumer_args(redis_url: str, prefix: str, settings, *extra: str) -> list[str]:
    return ["consumer", "--redis", redis_url, "--prefix", prefix, "--data", str(settings.data),
            "--cache-dir", str(settings.cache_dir), *extra]


# -- 1. results are checked ------------------------------------------------------------------------

def test_forged_results_never_end_the_wait_and_a_real_one_replaces_them(client, redis_prefix, onnx_file,
                                                                        caplog):
    queue = JobQueue(client, redis_prefix)
    job = queue.submit(new_job(), onnx_file)
    key = queue.keys.result(job.job_id)
    forged = [
        json.dumps(result_body(job.job_id, "real-run")).replace("99.9", '"high"'),  # a string Top1
        json.dumps(result_body(job.job_id, "attacker-run")),
        json.dumps(result_body("another-job", "real-run")),
        json.dumps(result_body(job.job_id, "real-run", metrics={"Top1": 150.0})),
        json.dumps(result_body(job.job_id, "real-run", metrics={"Total_Latency": -1})),
        json.dumps(result_body(job.job_id, "real-run", metrics={"Top5": float("nan")})),
        json.dumps(result_body(job.job_id, "real-run", metrics={"Top1": 1, "macs": 10**400})),
        json.dumps(result_body(job.job_id, "real-run", status="failed")),  # a failure with figures
        json.dumps(result_body(job.job_id, "real-run", status="great")),
        "not json {",
        "[1, 2]",
    ]
    caplog.set_level(logging.WARNING, logger="pipeline.queue.streams")
    for text in forged:
        client.set(key, text)
        assert queue.wait_result(job.job_id, timeout=0.2) is None, text
    client.delete(key)
    client.hset(key, "status", "ok")  # the wrong Redis type: WRONGTYPE on GET
    assert queue.wait_result(job.job_id, timeout=0.2) is None
    warnings = [r.getMessage() for r in caplog.records if "ignoring what is stored" in r.getMessage()]
    assert len(warnings) == len(forged) + 1 and all("\n" not in w for w in warnings)

    # The real consumer's result is stored over the forged value, and believed.
    serve(queue)
    result = queue.wait_result(job.job_id, timeout=5)
    assert result is not None and result.ok and result.run_id == "real-run"
    assert result.metrics["onnx_bytes"] == onnx_file.stat().st_size


def test_what_a_real_consumer_reports_is_accepted():
    from pipeline.queue.results import check_result

    metrics = {"Latency": None, "Throughput": None, "Total_Latency": 1.25, "Top1": 100, "Top5": 100.0,
               "latency": {"median": 1.3, "count": 200}, "per_layer": [{"name": "conv", "ms": 0.1}],
               "precision": "fp32", "runtime_precisions": ["f32"], "measurement_flag": "", "macs": 0}
    body = result_body("j1", "r1", metrics=metrics, consumer="host:c1", started_at=1, finished_at=2.5)
    assert check_result(json.dumps(body), "j1", "r1", None).metrics == metrics
    failed = result_body("j1", "r1", status="failed", metrics={}, error="BenchmarkError: no device")
    assert not check_result(json.dumps(failed), "j1", None, None).ok


def test_a_valid_result_is_never_replaced(client, redis_prefix, onnx_file):
    queue = JobQueue(client, redis_prefix)
    job = queue.submit(new_job(), onnx_file)
    first = Result(job_id=job.job_id, run_id="real-run", status=JobStatus.OK, metrics={"Top1": 50.0})
    client.set(queue.keys.result(job.job_id), first.to_json())
    serve(queue)  # the stored result counts: the job is settled as a duplicate
    assert queue.wait_result(job.job_id, timeout=1).metrics == {"Top1": 50.0}


def test_producer_ignores_a_forged_result_and_times_out(redis_url, redis_prefix, settings, tmp_path, client):
    queue = JobQueue(client, redis_prefix)
    stream = queue.keys.jobs(TARGET.name)
    forged_job: list[str] = []

    def forge() -> None:
        # No consumer at all: the attacker answers the job as soon as it is queued.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not forged_job:
            for _, fields in client.xrange(stream):
                job = json.loads(fields[b"job"])
                client.set(queue.keys.result(job["job_id"]),
                           json.dumps(result_body(job["job_id"], job["run_id"],
                                                  metrics={"Top1": "high", "Total_Latency": 0.001})))
                client.lpush(queue.keys.done(job["job_id"]), 1)  # and wakes the producer
                forged_job.append(job["job_id"])
            time.sleep(0.05)

    attacker = threading.Thread(target=forge)
    attacker.start()
    out_dir = tmp_path / "trial"
    done = edgeprune("producer", "--schedule", str(SCHEDULE), "--model", "resnet20_cifar", "--eval-limit",
                     "100", "--out", str(out_dir), "--data", str(settings.data), "--cache-dir",
                     str(settings.cache_dir), "--torch-device", "cpu", "--redis", redis_url, "--prefix",
                     redis_prefix, "--timeout", "4", timeout=300)
    attacker.join()
    assert forged_job, "the producer never queued its job"
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    ignored = [line for line in done.stderr.splitlines() if "ignoring what is stored" in line]
    assert len(ignored) == 1, done.stderr
    assert "metric Top1 is 'high'" in ignored[0]
    record = json.loads((out_dir / "result.json").read_text())
    assert record["status"] == "pending" and "Top1" not in record["metrics"]


# -- 1. signing ------------------------------------------------------------------------------------

def test_signed_queue_runs_signed_jobs_and_refuses_unsigned_ones(client, redis_prefix, onnx_file, caplog):
    queue = JobQueue(client, redis_prefix, QueueConfig(secret=SECRET))
    good = queue.submit(new_job(), onnx_file)
    raw_entry = client.xrange(queue.keys.jobs(TARGET.name))[0][1][b"job"]
    assert "sig" in json.loads(raw_entry)
    data = onnx_file.read_bytes()
    stream = queue.keys.jobs(TARGET.name)
    unsigned = uuid.uuid4().hex
    client.set(queue.keys.artifact(unsigned), data)
    client.xadd(stream, job_message(unsigned, artifact(f"redis://{queue.keys.artifact(unsigned)}", data)))
    wrong = new_job()
    body = json.loads(job_message(wrong.job_id, artifact(f"redis://{queue.keys.artifact(wrong.job_id)}",
                                                         data))["job"])
    client.set(queue.keys.artifact(wrong.job_id), data)
    client.xadd(stream, {"job": signed_json(b"w" * 32, "job", body)})
    # A signed job, its body changed afterwards (another run id).
    changed = json.loads(signed_json(SECRET, "job", {**body, "job_id": uuid.uuid4().hex}))
    client.xadd(stream, {"job": json.dumps({**changed, "run_id": "changed"})})

    serve(queue)
    assert queue.wait_result(good.job_id, timeout=5).ok
    reasons = sorted(dead_reasons(queue))
    assert len(reasons) == 3
    assert sum("carries no signature, but this queue signs its messages" in r for r in reasons) == 1
    assert sum("signature does not match" in r for r in reasons) == 2
    # Unsigned jobs never ran: no result, their artifacts untouched.
    assert client.get(queue.keys.result(unsigned)) is None
    assert client.get(queue.keys.artifact(unsigned)) == data

    # An unsigned (or wrongly signed) result is ignored with a warning, even a plausible one.
    job = queue.submit(new_job(), onnx_file)
    caplog.set_level(logging.WARNING, logger="pipeline.queue.streams")
    client.set(queue.keys.result(job.job_id), json.dumps(result_body(job.job_id, "real-run")))
    assert queue.wait_result(job.job_id, timeout=0.2) is None
    client.set(queue.keys.result(job.job_id),
               signed_json(b"w" * 32, "result", result_body(job.job_id, "real-run")))
    assert queue.wait_result(job.job_id, timeout=0.2) is None
    ignored = [r.getMessage() for r in caplog.records if "ignoring what is stored" in r.getMessage()]
    assert len(ignored) == 2 and all("signature" in m for m in ignored)
    # A signed job cannot pass as a result: the domains differ.
    client.set(queue.keys.result(job.job_id), signed_json(SECRET, "job", result_body(job.job_id, "real-run")))
    assert queue.wait_result(job.job_id, timeout=0.2) is None
    serve(queue)
    assert queue.wait_result(job.job_id, timeout=5).ok


def test_consumer_and_producer_processes_share_a_secret_file_or_env(redis_url, redis_prefix, settings,
                                                                   client, onnx_file, tmp_path):
    secret_file = tmp_path / "queue.secret"
    secret_file.write_text(SECRET.decode() + "\n")
    queue = JobQueue(client, redis_prefix, QueueConfig(secret=SECRET))
    client.xadd(queue.keys.jobs(TARGET.name), job_message(uuid.uuid4().hex, artifact("redis://x", b"x")))
    job = queue.submit(new_job(), onnx_file)
    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--check-only", "--max-jobs", "1",
                                    "--idle-exit", "20", "--queue-secret-file", str(secret_file)))
    assert done.returncode == 0, done.stderr
    assert "1 done" in done.stderr and SECRET.decode() not in done.stderr
    assert queue.wait_result(job.job_id, timeout=5).ok
    assert "carries no signature" in dead_reasons(queue)[0]

    # The same secret from the environment; a short one is one Error line, before any work.
    job = queue.submit(new_job(), onnx_file)
    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--check-only", "--max-jobs", "1",
                                    "--idle-exit", "20"), env={"EDGEPRUNE_QUEUE_SECRET": SECRET.decode()})
    assert done.returncode == 0, done.stderr
    assert queue.wait_result(job.job_id, timeout=5).ok
    secret_file.write_text("short")
    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--check-only",
                                    "--queue-secret-file", str(secret_file)))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"Error: the queue secret in {secret_file} is 5 bytes, under 16: use a long random secret, "
        "e.g. from `openssl rand -hex 32`"]
    assert "short" not in done.stderr.replace(str(secret_file), "")


# -- 2. a job id in flight cannot be hijacked ------------------------------------------------------

def test_an_entry_reusing_the_id_of_a_job_in_flight_is_dead_lettered_alone(redis_url, redis_prefix, settings,
                                                                          client, onnx_file):
    queue = JobQueue(client, redis_prefix)
    real = queue.submit(new_job("real-run"), onnx_file)
    stream = queue.keys.jobs(TARGET.name)
    first = queue.claim(TARGET, "first-consumer", block_s=1)  # this test is the consumer measuring it
    assert first.job.job_id == real.job_id
    data = onnx_file.read_bytes()
    own_key = f"redis://{queue.keys.artifact(real.job_id)}"
    # Another sha256 (and size); the right artifact under another run id.
    client.xadd(stream, job_message(real.job_id, artifact(own_key, b"evil model")))
    client.xadd(stream, job_message(real.job_id, artifact(own_key, data)))
    other = queue.submit(new_job("other-run"), onnx_file)

    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--check-only", "--max-jobs", "1",
                                    "--idle-exit", "20", "--name", "second"))
    assert done.returncode == 0, done.stderr
    assert "1 done" in done.stderr and "Traceback" not in done.stderr
    assert queue.wait_result(other.job_id, timeout=5).ok
    reasons = dead_reasons(queue)
    assert len(reasons) == 2 and all("reuses the id of a job in flight" in r for r in reasons)
    assert {row["job_id"] for row in queue.dead_letters()} == {real.job_id}
    # The first job's result, artifact and claim are untouched...
    assert client.get(queue.keys.result(real.job_id)) is None
    assert client.get(queue.keys.artifact(real.job_id)) == data
    pending = client.xpending_range(stream, "consumers", min="-", max="+", count=10)
    assert [(p["message_id"].decode(), p["consumer"].decode()) for p in pending] == [
        (first.entry_id, "first-consumer")]
    # ...so its real measurement is stored and believed.
    ok = Result(job_id=real.job_id, run_id="real-run", status=JobStatus.OK, metrics={"Top1": 42.0})
    assert queue.complete(first, ok)
    assert queue.wait_result(real.job_id, timeout=5).metrics == {"Top1": 42.0}


def test_a_job_the_consumer_reads_normalised_is_not_taken_for_a_hijack(client, redis_prefix, onnx_file):
    from pipeline.messages import ModelFacts

    queue = JobQueue(client, redis_prefix, QueueConfig(secret=SECRET))
    job = new_job()
    # Integers where the message says float: the consumer's parse turns them into floats.
    job.model = ModelFacts(mean=[0, 1, 1], std=[1, 1, 1])
    job = queue.submit(job, onnx_file)
    serve(queue)
    assert queue.wait_result(job.job_id, timeout=5).ok and queue.dead_letters() == []


def test_max_jobs_counts_a_job_whose_result_was_already_stored(client, redis_prefix, onnx_file):
    queue = JobQueue(client, redis_prefix)
    job = queue.submit(new_job(), onnx_file)
    worker = Worker(queue, TARGET, check_only, name="c1")
    claimed = queue.claim(TARGET, "c1", block_s=1)
    # Another consumer (which reclaimed it) stores its result while this one measures.
    client.set(queue.keys.result(job.job_id),
               Result(job_id=job.job_id, run_id="real-run", status=JobStatus.OK, metrics={"Top1": 1.0}).to_json())
    assert worker.process(claimed)
    assert worker.stats.finished == 1 and worker.stats.duplicates == 1


# -- 3. no entry crashes the consumer --------------------------------------------------------------

def test_entries_that_crashed_the_consumer_cost_one_dead_letter_each(redis_url, redis_prefix, settings,
                                                                    client, onnx_file):
    queue = JobQueue(client, redis_prefix)
    stream = queue.keys.jobs(TARGET.name)
    data = onnx_file.read_bytes()

    def own(job_id: str) -> str:
        return f"redis://{queue.keys.artifact(job_id)}"

    huge = uuid.uuid4().hex
    client.xadd(stream, job_message(huge, {"uri": own(huge), "sha256": "0" * 64, "size": 10**4000}))
    as_list, as_hash = uuid.uuid4().hex, uuid.uuid4().hex
    client.rpush(queue.keys.artifact(as_list), b"a", b"b")
    client.hset(queue.keys.artifact(as_hash), "a", "b")
    for job_id in (as_list, as_hash):
        client.xadd(stream, job_message(job_id, artifact(own(job_id), data)))
    good = queue.submit(new_job(), onnx_file)

    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--check-only", "--idle-exit", "3",
                                    "--visibility-timeout", "1"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "1 done, 2 failed" in done.stderr  # the two parsed jobs failed; the size never parsed
    assert queue.wait_result(good.job_id, timeout=5).ok
    rows = {row["job_id"] or huge: row for row in queue.dead_letters()}
    assert set(rows) == {huge, as_list, as_hash} and all(r["attempts"] == 1 for r in rows.values())
    assert "artifact.size is" in rows[huge]["error"]
    assert "holds a Redis list, not a model file" in rows[as_list]["error"]
    assert "holds a Redis hash, not a model file" in rows[as_hash]["error"]
    # Keys the queue did not create are left alone.
    assert client.lrange(queue.keys.artifact(as_list), 0, -1) == [b"a", b"b"]
    assert client.hgetall(queue.keys.artifact(as_hash)) == {b"a": b"b"}
    status = queue.status()
    assert (status["waiting"], status["in_flight"], status["counters"]["dead"]) == (0, 0, 3)


# -- issue 36: the consumer's per-job time limit ---------------------------------------------------

def slow_model(path: Path, layers: int = 200, width: int = 2048) -> Path:
    """A valid ONNX model for a [1, 3, 32, 32] input that takes about two seconds per inference
    (a chain of 96 x 2048 x 2048 MatMuls): even a --fast measurement takes minutes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.full((width, width), 1e-4, np.float32), "w"),
               numpy_helper.from_array(np.full((32, width), 1e-3, np.float32), "w0"),
               numpy_helper.from_array(np.array([96, 32], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w0"], ["h0"])]
    nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]) for i in range(layers)]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, [96, width])],
                              weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_a_job_past_the_time_limit_fails_with_its_reason_and_the_consumer_goes_on(
        redis_url, redis_prefix, settings, client, onnx_file, tmp_path):
    queue = JobQueue(client, redis_prefix)
    slow = queue.submit(new_job("slow-run"), slow_model(tmp_path / "slow.onnx"))
    quick = queue.submit(new_job("quick-run"), onnx_file)
    started = time.monotonic()
    done = edgeprune(*consumer_args(redis_url, redis_prefix, settings, "--fast", "--job-timeout", "20",
                                    "--max-jobs", "2", "--idle-exit", "30"), timeout=240)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    failure = queue.wait_result(slow.job_id, timeout=5)
    assert failure.status == "failed" and not failure.metrics
    assert "took over the consumer's time limit of 20 s" in failure.error
    assert "dead-lettered after 1 attempt(s)" in failure.error  # no retry: it would overrun again
    # The consumer went on to the next job. Its figures are taken while the abandoned measurement
    # still runs (docs/queue.md), so on a loaded machine it may overrun too: then it says so.
    quick_result = queue.wait_result(quick.job_id, timeout=5)
    if quick_result.ok:
        assert quick_result.metrics["Total_Latency"] > 0 and "1 done, 1 failed" in done.stderr
    else:
        assert "time limit of 20 s" in quick_result.error and "0 done, 2 failed" in done.stderr
    assert time.monotonic() - started < 200
