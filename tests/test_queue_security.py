"""Hostile queue content against the real Redis: entries written straight into a job stream with
redis-py (XADD of crafted fields), and a consumer running on them.

No entry may crash a consumer, block its stream, or make it read, write or delete anything outside
the artifact namespace the queue itself created; each is dead-lettered with its reason instead.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.errors import QueueError
from pipeline.messages import ArtifactRef, Job, Target
from pipeline.queue import JobQueue, QueueConfig, QueueKeys, Worker, check_only, connect

REPO = Path(__file__).resolve().parent.parent
TARGET = Target()


def job_message(job_id: Any, artifact: Any, **fields: Any) -> dict[str, str]:
    """Stream fields of a job as an attacker writes it (any JSON, no checks)."""
    return {"job": json.dumps({"job_id": job_id, "run_id": "run-x", "artifact": artifact,
                               "target": TARGET.to_dict(), "eval_split": "", **fields})}


def artifact(uri: str, data: bytes) -> dict[str, Any]:
    """A claim check that is right about ``data``'s size and sha256."""
    return {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def serve(queue: JobQueue) -> None:
    """A consumer (``check_only`` work) that runs until the stream has been quiet for a moment."""
    Worker(queue, TARGET, check_only, name="c1").run(threading.Event(), idle_exit=0.5, block_s=0.1)


def dead_reasons(queue: JobQueue) -> list[str]:
    return [row["error"] for row in queue.dead_letters()]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """The file store's directory."""
    path = tmp_path / "shared"
    path.mkdir()
    return path


def file_queue(client: redis.Redis, prefix: str, shared: Path, **config: Any) -> JobQueue:
    return JobQueue(client, prefix, QueueConfig(artifact_store=shared.as_uri(), **config))


def test_artifact_uris_outside_the_queues_namespace_are_dead_lettered_and_left_alone(
        client, redis_prefix, shared, tmp_path, onnx_file):
    queue = file_queue(client, redis_prefix, shared)
    data = onnx_file.read_bytes()
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(data)
    other = queue.submit(Job(job_id=uuid.uuid4().hex, run_id="other", target=Target(device="GPU"),
                             artifact=ArtifactRef(uri="", sha256="", size=0)), onnx_file)
    client.set(queue.keys.result("done-job"), b"a result")
    symlinked = uuid.uuid4().hex
    (shared / f"{symlinked}.onnx").symlink_to(victim)
    foreign = {
        # Right size and sha256: only the place is wrong.
        uuid.uuid4().hex: victim.as_uri(),
        symlinked: (shared / f"{symlinked}.onnx").as_uri(),
        uuid.uuid4().hex: f"file://{shared}/../victim.onnx",
        uuid.uuid4().hex: f"redis://{queue.keys.result('done-job')}",
        uuid.uuid4().hex: f"redis://{queue.keys.jobs('openvino-GPU')}",
        uuid.uuid4().hex: f"redis://{queue.keys.artifact(other.job_id)}",
    }
    for job_id, uri in foreign.items():
        client.xadd(queue.keys.jobs(TARGET.name), job_message(job_id, artifact(uri, data)))
    serve(queue)

    reasons = dead_reasons(queue)
    assert len(reasons) == len(foreign)
    assert all("a consumer reads and deletes only the queue's own artifacts" in r for r in reasons)
    assert victim.read_bytes() == data and (shared / f"{symlinked}.onnx").is_symlink()
    assert client.get(queue.keys.result("done-job")) == b"a result"
    assert client.xlen(queue.keys.jobs("openvino-GPU")) == 1
    assert client.get(queue.keys.artifact(other.job_id)) is None  # file store: it is in shared/
    assert (shared / f"{other.job_id}.onnx").read_bytes() == data
    for job_id in foreign:
        assert queue.result(job_id).status == "failed"


def test_a_consumer_with_the_redis_store_refuses_file_artifacts(client, redis_prefix, tmp_path, onnx_file):
    queue = JobQueue(client, redis_prefix)
    data = onnx_file.read_bytes()
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(data)
    client.xadd(queue.keys.jobs(TARGET.name), job_message(uuid.uuid4().hex, artifact(victim.as_uri(), data)))
    serve(queue)
    assert "this consumer's artifact store is redis: start it with --artifacts file:///dir" in dead_reasons(queue)[0]
    assert victim.read_bytes() == data


@pytest.mark.parametrize("job_id", ["../../escaped", "ABSOLUTE"])
def test_job_ids_that_would_leave_the_scratch_folder_are_refused(client, redis_prefix, tmp_path, monkeypatch,
                                                                 onnx_file, job_id):
    import tempfile

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    # Scratch folders are made under tmp/, so "../../escaped" would land in tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    if job_id == "ABSOLUTE":
        job_id = str(tmp_path / "escaped")
    queue = JobQueue(client, redis_prefix)
    data = onnx_file.read_bytes()
    client.set(f"{redis_prefix}:artifact:{job_id}", data)
    client.xadd(queue.keys.jobs(TARGET.name),
                job_message(job_id, artifact(f"redis://{redis_prefix}:artifact:{job_id}", data)))
    serve(queue)
    assert not (tmp_path / "escaped.onnx").exists()
    assert "is not 1-64 letters, digits, '_' or '-'" in dead_reasons(queue)[0]
    assert queue.status()["waiting"] == queue.status()["in_flight"] == 0


def test_poison_pills_are_dead_lettered_and_the_real_consumer_keeps_serving(
        redis_url, redis_prefix, client, shared, settings, onnx_file):
    queue = file_queue(client, redis_prefix, shared)
    stream = queue.keys.jobs(TARGET.name)
    data = onnx_file.read_bytes()
    folder_job = uuid.uuid4().hex
    (shared / f"{folder_job}.onnx").mkdir()
    big_job = uuid.uuid4().hex
    big = b"\x00" * (2 * 1024 * 1024)
    (shared / f"{big_job}.onnx").write_bytes(big)
    pills = [
        (job_message(["a", "list"], artifact("redis://x", data)), "job_id: Input should be a valid string"),
        (job_message(uuid.uuid4().hex, "redis://x"), "artifact: Input should be an object"),
        (job_message(folder_job, artifact((shared / f"{folder_job}.onnx").as_uri(), data)),
         "is not a regular file"),
        (job_message(big_job, artifact((shared / f"{big_job}.onnx").as_uri(), big)),
         "over the 1 MiB artifact limit of this consumer: raise --max-artifact-mb"),
        (job_message(uuid.uuid4().hex, artifact("redis://x", data), target={"backend": "openvino",
                                                                             "device": "GPU"}),
         "job for target 'openvino-GPU' on the stream of openvino-CPU"),
        ({"something": "else"}, "the entry has no 'job' field"),
        ({"job": "not json {"}, "unreadable job message"),
        ({"job": b"\xff\xfe" * 10_000}, "unreadable job message"),
        ({"job": "[1, 2]"}, "unreadable job message"),
    ]
    for fields, _ in pills:
        client.xadd(stream, fields)
    good = queue.submit(Job(job_id=uuid.uuid4().hex, run_id="good", eval_split="",
                            artifact=ArtifactRef(uri="", sha256="", size=0)), onnx_file)

    argv = [sys.executable, "-m", "edgeprune", "consumer", "--redis", redis_url, "--prefix", redis_prefix,
            "--check-only", "--idle-exit", "3", "--artifacts", shared.as_uri(), "--max-artifact-mb", "1",
            "--data", str(settings.data), "--cache-dir", str(settings.cache_dir)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 done" in done.stderr and "Traceback" not in done.stderr

    assert queue.result(good.job_id).ok
    rows = list(reversed(queue.dead_letters()))  # oldest first: the order they were written
    assert len(rows) == len(pills)
    for row, (_, reason) in zip(rows, pills):
        assert reason in row["error"], row["error"]
    unparsed = [row for row in rows if row["job_id"] == ""]
    assert len(unparsed) == 7 and all(0 < len(row["raw"]) <= 2001 for row in unparsed)
    assert (shared / f"{folder_job}.onnx").is_dir()
    status = queue.status()
    assert (status["waiting"], status["in_flight"]) == (0, 0)


def test_the_consumers_size_limit_holds_before_reading(client, redis_prefix, onnx_file):
    producer = JobQueue(client, redis_prefix)
    consumer = JobQueue(client, redis_prefix, QueueConfig(max_artifact_bytes=100_000))
    honest = producer.submit(Job(job_id=uuid.uuid4().hex, run_id="big", eval_split="",
                                 artifact=ArtifactRef(uri="", sha256="", size=0)), onnx_file)
    # A claim check that understates the size: the stored length (STRLEN) gives it away.
    liar = uuid.uuid4().hex
    client.set(consumer.keys.artifact(liar), onnx_file.read_bytes())
    client.xadd(consumer.keys.jobs(TARGET.name),
                job_message(liar, {"uri": f"redis://{consumer.keys.artifact(liar)}", "sha256": "0" * 64,
                                   "size": 10}))
    serve(consumer)
    size_mib = onnx_file.stat().st_size / 2**20
    assert sorted(dead_reasons(consumer)) == sorted([
        f"the artifact of job {honest.job_id} is declared {size_mib:.1f} MiB, over the 0.09537 MiB "
        "artifact limit of this consumer: raise --max-artifact-mb",
        f"the artifact of job {liar} is {size_mib:.1f} MiB, over the 0.09537 MiB artifact limit of "
        "this consumer: raise --max-artifact-mb"])
    assert client.get(consumer.keys.artifact(honest.job_id)) is None  # its own artifact is cleaned up


def test_glob_characters_in_the_prefix_are_refused(client, redis_url, redis_prefix, onnx_file):
    JobQueue(client, redis_prefix).submit(Job(job_id=uuid.uuid4().hex, run_id="r",
                                              artifact=ArtifactRef(uri="", sha256="", size=0)), onnx_file)
    for prefix in ("*", f"{redis_prefix[:-3]}*", "a?b", "[ab]", "a:b", ""):
        with pytest.raises(QueueError, match="is not 1-64 letters, digits, '.', '_' or '-'"):
            JobQueue(client, prefix)
    done = subprocess.run([sys.executable, "-m", "edgeprune", "queue", "status", "--redis", redis_url,
                           "--prefix", "*", "--json"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: queue prefix '*' is not 1-64 letters, digits, '.', '_' or '-' starting with a letter "
        "or digit: pass e.g. --prefix edgeprune"]
    assert QueueKeys("a.b-c_1").match("result") == "a.b-c_1:result:*"


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop and restart (a blip) at will."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.timers: list[threading.Timer] = []

    def later(self, delay_s: float, action) -> None:
        """Run ``action`` in ``delay_s`` seconds (the fixture waits for it before stopping the server)."""
        timer = threading.Timer(delay_s, action)
        self.timers.append(timer)
        timer.start()

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                threading.Event().wait(0.02)
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    for timer in server.timers:
        timer.join()
    server.stop()


def test_submit_and_wait_ride_out_a_redis_restart(private_redis, onnx_file):
    queue = JobQueue(connect(private_redis.url), "blip")
    private_redis.stop()
    private_redis.later(1.0, private_redis.start)
    job = queue.submit(Job(job_id=uuid.uuid4().hex, run_id="r", artifact=ArtifactRef(uri="", sha256="", size=0)),
                       onnx_file, retry_s=30)
    assert queue.status()["waiting"] == 1

    def restart_and_answer() -> None:
        private_redis.start()
        # The restarted server is empty: a consumer elsewhere stores the result now.
        result = {"job_id": job.job_id, "run_id": "r", "status": "ok", "metrics": {"Latency": 1.0}}
        redis.Redis.from_url(private_redis.url).set(queue.keys.result(job.job_id), json.dumps(result))

    private_redis.stop()
    private_redis.later(1.0, restart_and_answer)
    got = queue.wait_result(job.job_id, timeout=30)
    assert got is not None and got.ok and got.metrics == {"Latency": 1.0}


def test_redis_gone_past_the_timeout_is_one_error_line_or_no_result(private_redis, onnx_file):
    from pipeline.queue.reconnect import RedisUnavailable

    queue = JobQueue(connect(private_redis.url), "blip")
    private_redis.stop()
    job = Job(job_id=uuid.uuid4().hex, run_id="r", artifact=ArtifactRef(uri="", sha256="", size=0))
    with pytest.raises(RedisUnavailable) as info:
        queue.submit(job, onnx_file, retry_s=0.5)
    assert str(info.value).startswith(f"Redis was unreachable while submitting job {job.job_id} and did "
                                      "not come back within 0.5 s (")
    assert str(info.value).endswith("): check the server, or raise --timeout")
    assert "\n" not in str(info.value)
    assert queue.wait_result(job.job_id, timeout=0.5) is None
