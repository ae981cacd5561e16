"""Producer and consumer agents as separate processes over the real Redis (127.0.0.1:6379).

Consumers are real ``edgeprune consumer`` processes measuring with OpenVINO (``--fast``) on an
exported ResNet20; producers submit through ``JobQueue`` from their own processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.messages import ArtifactRef, Job
from pipeline.queue import JobQueue, connect

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = REPO / "schedules" / "resnet20_filter_rank.yaml"

#: A producer process: submits N jobs for one model file, waits for every result, prints them.
#: (No deployed accuracy: the other tests cover it, and this one is about the queue.)
PRODUCER = """
import json, sys, uuid
from pathlib import Path
from pipeline.messages import ArtifactRef, Job
from pipeline.queue import JobQueue, connect
url, prefix, onnx, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
queue = JobQueue(connect(url), prefix)
jobs = [queue.submit(Job(job_id=uuid.uuid4().hex, run_id=f"run-{i}", eval_split="",
                         artifact=ArtifactRef(uri="", sha256="", size=0)), onnx) for i in range(count)]
results = {job.job_id: queue.wait_result(job.job_id, timeout=120) for job in jobs}
print(json.dumps({k: r.to_dict() if r else None for k, r in results.items()}))
"""


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet20 (random weights) exported to ONNX: about 1 MB, a real model for OpenVINO."""
    import torch

    from pipeline.models import create_model

    path = tmp_path_factory.mktemp("agents") / "resnet20.onnx"
    torch.onnx.export(create_model("resnet20_cifar").eval(), torch.zeros(1, 3, 32, 32), str(path),
                      dynamo=False)
    return path


@pytest.fixture
def queue(redis_url: str, redis_prefix: str) -> JobQueue:
    return JobQueue(connect(redis_url), redis_prefix)


def edgeprune(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeprune", *args]


def consumer_args(redis_url: str, prefix: str, settings, *extra: str) -> list[str]:
    return edgeprune("consumer", "--redis", redis_url, "--prefix", prefix, "--data",
                     str(settings.data), "--cache-dir", str(settings.cache_dir), *extra)


_started: list[subprocess.Popen] = []


def start(argv: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def no_stray_processes(redis_prefix):
    """A failed test must not leave agents running; they are stopped before the keys under
    ``redis_prefix`` are cleaned up (this fixture is set up after it, so torn down before)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def submit(queue: JobQueue, onnx: Path, eval_subset: int = 100) -> Job:
    job = Job(job_id=uuid.uuid4().hex, run_id="run-" + uuid.uuid4().hex[:6], eval_subset=eval_subset,
              artifact=ArtifactRef(uri="", sha256="", size=0))
    return queue.submit(job, onnx)


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def busy_consumer(queue: JobQueue, name: str) -> str:
    """The job id the named consumer's heartbeat says it is working on ('' when idle)."""
    beats = {b["name"]: b for b in queue.status()["consumers"]}
    return beats.get(name, {}).get("current_job", "")


def test_two_producers_one_consumer_complete_ten_jobs(redis_url, redis_prefix, settings,
                                                      resnet20_onnx, queue):
    consumer = start(consumer_args(redis_url, redis_prefix, settings, "--fast", "--name", "c1",
                                   "--max-jobs", "10", "--idle-exit", "60"))
    producers = [start([sys.executable, "-c", PRODUCER, redis_url, redis_prefix, str(resnet20_onnx), "5"])
                 for _ in range(2)]
    results: dict[str, dict] = {}
    for producer in producers:
        code, out, err = finish(producer)
        assert code == 0, err
        results.update(json.loads(out))
    code, _, err = finish(consumer)
    assert code == 0, err
    assert len(results) == 10 and all(r is not None for r in results.values())
    # The consumer says what it serves (target, queue, engine), then one line per job.
    lines = err.splitlines()
    startup = next(line for line in lines if line.startswith("consumer c1: serving"))
    assert "openvino CPU" in startup and redis_url.split("@")[-1] in startup and "OpenVINO 20" in startup
    job_lines = [line for line in lines if line.startswith("job ")]
    assert sorted(line.split()[1] for line in job_lines) == sorted(j[:12] for j in results)
    assert all("Total_Latency" in line and line.endswith(" s") for line in job_lines)
    for job_id, result in results.items():
        assert result["status"] == "ok", result["error"]
        assert result["job_id"] == job_id and result["consumer"].endswith(":c1")
        metrics = result["metrics"]
        assert metrics["Total_Latency"] > 0 and metrics["Throughput"] > 0
    status = queue.status()
    assert (status["waiting"], status["in_flight"], status["results_stored"]) == (0, 0, 10)
    assert status["counters"]["ok"] == 10 and "duplicates" not in status["counters"]
    assert not list(queue.client.scan_iter(match=queue.keys.artifact("*")))


def test_sigkilled_consumers_job_goes_to_another_exactly_once(redis_url, redis_prefix, settings,
                                                             resnet20_onnx, queue):
    job = submit(queue, resnet20_onnx)
    # Full measurement (several seconds): the victim is reliably mid-job when it is killed.
    victim = start(consumer_args(redis_url, redis_prefix, settings, "--name", "victim",
                                 "--visibility-timeout", "2"))
    wait_for(lambda: busy_consumer(queue, "victim") == job.job_id, what="the victim to take the job")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert queue.result(job.job_id) is None
    in_flight = queue.status()["targets"]["openvino-CPU"]["in_flight_jobs"]
    assert [j["consumer"] for j in in_flight] == ["victim"]

    rescuer = start(consumer_args(redis_url, redis_prefix, settings, "--fast", "--name", "rescuer",
                                  "--visibility-timeout", "2", "--max-jobs", "1", "--idle-exit", "30"))
    code, _, err = finish(rescuer)
    assert code == 0, err
    result = queue.wait_result(job.job_id, timeout=5)
    assert result.ok and result.consumer.endswith(":rescuer")
    assert 0 <= result.metrics["Top1"] <= result.metrics["Top5"] <= 100
    status = queue.status()
    assert status["results_stored"] == 1 and status["in_flight"] == 0
    assert status["counters"]["reclaimed"] == 1 and status["counters"]["ok"] == 1


def test_sigterm_finishes_the_current_job_then_exits_cleanly(redis_url, redis_prefix, settings,
                                                            resnet20_onnx, queue):
    job = submit(queue, resnet20_onnx)
    consumer = start(consumer_args(redis_url, redis_prefix, settings, "--name", "stopping"))
    wait_for(lambda: busy_consumer(queue, "stopping") == job.job_id, what="the consumer to take the job")
    consumer.send_signal(signal.SIGTERM)
    code, _, err = finish(consumer)
    assert code == 0, err
    assert queue.result(job.job_id).ok
    assert queue.status()["consumers"] == []  # its heartbeat is gone with it


def test_bad_jobs_are_dead_lettered_with_their_reasons(redis_url, redis_prefix, settings, tmp_path,
                                                     resnet20_onnx, queue):
    tampered = submit(queue, resnet20_onnx)
    key = queue.keys.artifact(tampered.job_id)
    data = bytearray(queue.client.get(key))
    data[100] ^= 0x01
    queue.client.set(key, bytes(data))
    broken_file = tmp_path / "broken.onnx"
    broken_file.write_bytes(b"this is not an ONNX model" * 100)
    broken = submit(queue, broken_file)
    # 1 delivery for the tampered job (no retry can fix it) + 2 attempts for the broken model.
    code, _, err = finish(start(consumer_args(redis_url, redis_prefix, settings, "--fast",
                                              "--max-attempts", "2", "--max-jobs", "3",
                                              "--idle-exit", "30")))
    assert code == 0, err

    failure = queue.wait_result(tampered.job_id, timeout=5)
    assert failure.status == "failed" and "sha256" in failure.error and not failure.metrics
    failure = queue.wait_result(broken.job_id, timeout=5)
    assert failure.status == "failed" and failure.error.startswith("dead-lettered after 2 attempt(s)")
    assert not failure.metrics

    code, out, err = finish(start(edgeprune("queue", "dead", "--redis", redis_url, "--prefix",
                                            redis_prefix, "--json")))
    assert code == 0, err
    dead = {d["job_id"]: d for d in json.loads(out)}
    assert set(dead) == {tampered.job_id, broken.job_id}
    assert "sha256" in dead[tampered.job_id]["error"] and dead[tampered.job_id]["attempts"] == 1
    assert dead[broken.job_id]["attempts"] == 2
    code, out, err = finish(start(edgeprune("queue", "status", "--redis", redis_url, "--prefix",
                                            redis_prefix, "--json")))
    status = json.loads(out)
    assert status["dead_lettered"] == 2 and status["counters"].get("ok", 0) == 0
    assert status["waiting"] == status["in_flight"] == 0


def test_unreachable_redis_is_one_clear_line_and_exit_2():
    code, out, err = finish(start(edgeprune("queue", "status", "--redis",
                                            "redis://:hunter2@127.0.0.1:1/0")), timeout=60)
    assert code == 2
    assert err.strip() == ("Error: cannot reach Redis at redis://:***@127.0.0.1:1/0: start "
                           "redis-server or pass --redis URL")
    assert "hunter2" not in out + err


@pytest.mark.slow
def test_producer_cli_with_sweep_args_through_redis(redis_url, redis_prefix, settings, tmp_path, queue):
    consumer = start(consumer_args(redis_url, redis_prefix, settings, "--fast", "--max-jobs", "1",
                                   "--idle-exit", "120"))
    out_dir = tmp_path / "trial"
    producer = start(edgeprune(
        "producer", "--redis", redis_url, "--prefix", redis_prefix, "--schedule", str(SCHEDULE),
        "--model", "resnet20_cifar", "--epochs", "1", "--max-steps", "1", "--batch-size", "32",
        "--eval-limit", "200", "--timeout", "120", "--out", str(out_dir), "--json",
        "--data", str(settings.data), "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu",
        "--filter_pruner_50_desired_sparsity=0.25", "--lr=0.02"))
    code, out, err = finish(producer, timeout=300)
    if code != 0:
        consumer.kill()
        raise AssertionError(f"producer exited {code}: {err}\nconsumer: {consumer.communicate()[1]}")
    record = json.loads(out)
    assert record == json.loads((out_dir / "result.json").read_text())
    assert record["status"] == "ok" and record["lr"] == 0.02
    # --lr=0.02 is one of the producer's own options (as W&B passes it): a run setting, not a
    # schedule parameter.
    assert record["params"] == {"filter_pruner_50_desired_sparsity": 0.25}
    assert "filter_pruner_50.desired_sparsity=0.25" in record["overrides"]
    assert record["metrics"]["Total_Latency"] > 0 and record["consumer"]
    code, _, err = finish(consumer)
    assert code == 0, err
    assert queue.status()["results_stored"] == 1


def producer_args(settings, out_dir: Path, *extra: str) -> list[str]:
    """One unretrained ResNet20 trial: a few seconds of producing, then the queue."""
    return edgeprune("producer", "--schedule", str(SCHEDULE), "--model", "resnet20_cifar",
                     "--eval-limit", "100", "--out", str(out_dir), "--data", str(settings.data),
                     "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu", *extra)


def test_producer_without_consumer_exits_3_and_records_pending(redis_url, redis_prefix, settings,
                                                               tmp_path, queue):
    out_dir = tmp_path / "trial"
    code, _, err = finish(start(producer_args(settings, out_dir, "--redis", redis_url, "--prefix",
                                              redis_prefix, "--timeout", "1")), timeout=300)
    assert code == 3, err
    assert "no result for job" in err and "Traceback" not in err
    record = json.loads((out_dir / "result.json").read_text())
    assert record["status"] == "pending"
    assert queue.status()["waiting"] == 1  # the job stays queued for a later consumer


def test_producer_whose_job_failed_exits_1(redis_url, redis_prefix, settings, tmp_path, queue):
    from pipeline.messages import Target

    out_dir = tmp_path / "trial"
    producer = start(producer_args(settings, out_dir, "--redis", redis_url, "--prefix", redis_prefix,
                                   "--timeout", "120"))
    # This test is the consumer: it takes the job and dead-letters it, as a consumer whose
    # measurement cannot succeed does.
    claimed = wait_for(lambda: queue.claim(Target(), "test-consumer", block_s=0.5), timeout=240,
                       what="the producer's job")
    queue.fail(claimed, "BenchmarkError: the model does not compile", permanent=True)
    code, _, err = finish(producer, timeout=120)
    assert code == 1, err
    assert f"job {claimed.job.job_id} failed" in err
    assert json.loads((out_dir / "result.json").read_text())["status"] == "failed"


def test_producer_user_error_after_export_leaves_no_output(settings, tmp_path):
    out_dir = tmp_path / "trial"
    # The exported ResNet20 (about 1 MB) is over the 10 KB limit: submit refuses it after export.
    code, out, err = finish(start(producer_args(settings, out_dir, "--max-artifact-mb", "0.01",
                                                "--fast")), timeout=300)
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("Error: ") and "Traceback" not in err
    assert not out_dir.exists() and not list(tmp_path.iterdir())
