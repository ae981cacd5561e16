"""JobQueue on the real Redis (127.0.0.1:6379): a job's life, reclaims, dead letters, artifacts."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
import redis

from pipeline.errors import QueueError
from pipeline.messages import ArtifactRef, Job, Result, Target
from pipeline.redact import redact_url
from pipeline.queue import ArtifactError, ClaimedJob, JobQueue, QueueConfig, check_only, connect
from pipeline.queue.config import GROUP

TARGET = Target(backend="openvino", device="CPU")


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def make_queue(client: redis.Redis, prefix: str, **config) -> JobQueue:
    return JobQueue(client, prefix, QueueConfig(**config))


def new_job(target: Target = TARGET) -> Job:
    return Job(job_id=uuid.uuid4().hex, run_id="run-" + uuid.uuid4().hex[:6],
               artifact=ArtifactRef(uri="", sha256="", size=0), target=target, params={"p": 0.5})


def ok_result(job: Job, latency: float = 1.5) -> Result:
    return Result(job_id=job.job_id, run_id=job.run_id, status="ok", metrics={"Latency": latency},
                  target=job.target)


def test_roundtrip_stores_one_result_and_deletes_the_artifact(client, prefix, onnx_file, tmp_path):
    queue = make_queue(client, prefix)
    job = queue.submit(new_job(), onnx_file)
    assert job.artifact.size == onnx_file.stat().st_size
    assert job.artifact.sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    # The stream entry carries the claim check, not the model bytes.
    entry = client.xrange(queue.keys.jobs(TARGET.name))[0][1]
    assert len(entry[b"job"]) < 2000 and job.artifact.size > 100_000
    assert queue.status()["waiting"] == 1

    claimed = queue.claim(TARGET, "c1", block_s=0)
    assert claimed is not None and claimed.attempt == 1 and not claimed.reclaimed
    assert queue.status()["targets"][TARGET.name]["in_flight_jobs"][0]["consumer"] == "c1"
    local = queue.fetch_artifact(claimed, tmp_path)
    assert local.read_bytes() == onnx_file.read_bytes()
    result = check_only(claimed.job, local)
    assert result.ok and result.metrics["onnx_bytes"] == onnx_file.stat().st_size
    assert queue.complete(claimed, result)

    got = queue.wait_result(job.job_id, timeout=1)
    assert got is not None and got.ok and got.metrics == result.metrics and got.consumer == "c1"
    assert client.get(queue.keys.artifact(job.job_id)) is None
    status = queue.status()
    assert (status["waiting"], status["in_flight"], status["results_stored"]) == (0, 0, 1)
    assert status["counters"]["ok"] == 1
    assert queue.claim(TARGET, "c1", block_s=0) is None


def go_quiet(queue: JobQueue, claimed: ClaimedJob, seconds: float) -> None:
    """Make ``claimed``'s consumer look silent for ``seconds``: Redis's XCLAIM ... IDLE sets the
    entry's idle time (same owner, delivery count unchanged), so no test sleeps out a timeout."""
    queue.client.xclaim(claimed.stream, GROUP, claimed.consumer, 0, [claimed.entry_id],
                        idle=int(seconds * 1000), justid=True)


def test_dead_consumer_job_is_reclaimed_and_second_result_ignored(client, prefix, onnx_file):
    queue = make_queue(client, prefix, visibility_timeout_s=60)
    job = queue.submit(new_job(), onnx_file)
    first = queue.claim(TARGET, "dies", block_s=0)
    assert queue.claim(TARGET, "lives", block_s=0) is None  # still within the timeout
    go_quiet(queue, first, 61)
    second = queue.claim(TARGET, "lives", block_s=0)
    assert second is not None and second.reclaimed and second.attempt == 2
    assert second.entry_id == first.entry_id
    assert queue.complete(second, ok_result(job, latency=2.0))
    # The first consumer was only slow: its late result must not replace the stored one.
    assert not queue.complete(first, ok_result(job, latency=9.0))
    assert queue.result(job.job_id).metrics["Latency"] == 2.0
    assert queue.status()["counters"]["duplicates"] == 1


def test_touch_keeps_a_live_consumers_job(client, prefix, onnx_file):
    queue = make_queue(client, prefix, visibility_timeout_s=60)
    queue.submit(new_job(), onnx_file)
    claimed = queue.claim(TARGET, "c1", block_s=0)
    for _ in range(3):
        go_quiet(queue, claimed, 59)  # a heartbeat each time the job nears the timeout
        assert queue.touch(claimed)
    go_quiet(queue, claimed, 59)
    assert queue.claim(TARGET, "c2", block_s=0) is None
    # Without the touches the job would have gone: three near-timeouts add up to far more than one.
    go_quiet(queue, claimed, 61)
    assert queue.claim(TARGET, "c2", block_s=0) is not None
    assert not queue.touch(claimed)  # c2 owns it now


def test_tampered_artifact_is_dead_lettered_with_the_reason(client, prefix, onnx_file, tmp_path):
    queue = make_queue(client, prefix)
    job = queue.submit(new_job(), onnx_file)
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    client.set(queue.keys.artifact(job.job_id), bytes(data))
    claimed = queue.claim(TARGET, "c1", block_s=0)
    with pytest.raises(ArtifactError, match="sha256") as info:
        queue.fetch_artifact(claimed, tmp_path)
    queue.fail(claimed, str(info.value), permanent=True)
    dead = queue.dead_letters()
    assert [d["job_id"] for d in dead] == [job.job_id] and "sha256" in dead[0]["error"]
    failure = queue.wait_result(job.job_id, timeout=1)
    assert failure.status == "failed" and "sha256" in failure.error and failure.metrics == {}


def test_job_failing_every_attempt_is_dead_lettered_without_figures(client, prefix, onnx_file):
    queue = make_queue(client, prefix, max_attempts=3)
    job = queue.submit(new_job(), onnx_file)
    for attempt in (1, 2, 3):
        claimed = queue.claim(TARGET, "c1", block_s=0)
        assert claimed.attempt == attempt
        queue.complete(claimed, Result(job_id=job.job_id, run_id=job.run_id, status="failed",
                                       error=f"engine crashed ({attempt})"))
        assert (queue.result(job.job_id) is None) == (attempt < 3)
    assert queue.claim(TARGET, "c1", block_s=0) is None
    failure = queue.result(job.job_id)
    assert failure.status == "failed" and failure.metrics == {}
    assert "3 attempt(s)" in failure.error and "engine crashed (3)" in failure.error
    assert queue.status()["dead_lettered"] == 1 and queue.status()["counters"].get("ok", 0) == 0


def test_job_whose_consumers_keep_dying_is_dead_lettered(client, prefix, onnx_file):
    queue = make_queue(client, prefix, visibility_timeout_s=60, max_attempts=2)
    job = queue.submit(new_job(), onnx_file)
    for name in ("a", "b"):
        claimed = queue.claim(TARGET, name, block_s=0)
        assert claimed is not None
        go_quiet(queue, claimed, 61)
    assert queue.claim(TARGET, "c", block_s=0) is None
    failure = queue.result(job.job_id)
    assert failure.status == "failed" and "no result after 2 deliveries" in failure.error


def test_release_does_not_count_as_an_attempt(client, prefix, onnx_file):
    queue = make_queue(client, prefix, max_attempts=1)
    queue.submit(new_job(), onnx_file)
    queue.release(queue.claim(TARGET, "stopping", block_s=0))
    claimed = queue.claim(TARGET, "next", block_s=0)
    assert claimed is not None and claimed.attempt == 1
    assert queue.status()["counters"]["released"] == 1


def test_wait_times_out_then_the_result_is_still_stored(client, prefix, onnx_file):
    queue = make_queue(client, prefix)
    job = queue.submit(new_job(), onnx_file)
    start = time.monotonic()
    assert queue.wait_result(job.job_id, timeout=1.0) is None
    assert time.monotonic() - start >= 1.0  # a lower bound: no load makes it wait less
    assert queue.status()["waiting"] == 1  # the job stays queued
    claimed = queue.claim(TARGET, "late", block_s=0)
    queue.complete(claimed, ok_result(job))
    assert queue.wait_result(job.job_id, timeout=0).ok


def test_claim_blocks_until_a_job_arrives(client, prefix, onnx_file):
    import threading

    queue = make_queue(client, prefix)
    job = new_job()
    # The job arrives while claim waits on the doorbell (under load perhaps before: either way
    # claim must return it, so nothing here depends on how long anything took).
    submitter = threading.Timer(0.3, queue.submit, args=(job, onnx_file))
    submitter.start()
    claimed = queue.claim(TARGET, "c1", block_s=60)
    submitter.join()
    assert claimed is not None and claimed.job.job_id == job.job_id


def test_file_store_roundtrip_and_cleanup(client, prefix, onnx_file, tmp_path):
    shared = tmp_path / "shared"
    queue = make_queue(client, prefix, artifact_store=shared.as_uri())
    job = queue.submit(new_job(), onnx_file)
    assert job.artifact.uri.startswith("file:///")
    claimed = queue.claim(TARGET, "c1", block_s=0)
    path = queue.fetch_artifact(claimed, tmp_path)
    assert path.parent == shared and path.read_bytes() == onnx_file.read_bytes()
    queue.complete(claimed, ok_result(job))
    assert list(shared.iterdir()) == []


def test_size_limit_names_the_fix(client, prefix, onnx_file):
    queue = make_queue(client, prefix, max_artifact_bytes=1024)
    with pytest.raises(ArtifactError, match=r"tiny.onnx is 0\.\d MiB, over the 0.0009766 MiB artifact "
                                            "limit: raise --max-artifact-mb"):
        queue.submit(new_job(), onnx_file)
    assert queue.status()["waiting"] == 0


def test_jobs_go_to_their_targets_stream(client, prefix, onnx_file):
    queue = make_queue(client, prefix)
    gpu = Target(backend="openvino", device="GPU")
    queue.submit(new_job(gpu), onnx_file)
    assert queue.claim(TARGET, "cpu-consumer", block_s=0) is None
    claimed = queue.claim(gpu, "gpu-consumer", block_s=0)
    assert claimed.stream == f"{prefix}:jobs:openvino-GPU"


def test_redis_urls_shown_with_their_password_masked():
    assert redact_url("redis://:s3cret@host:6380/1") == "redis://:***@host:6380/1"
    assert redact_url("rediss://user:s3cret@host/0") == "rediss://user:***@host/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_unreachable_redis_is_a_queue_error_without_the_password():
    with pytest.raises(QueueError) as info:
        connect("redis://:topsecret@127.0.0.1:1/0")
    assert "topsecret" not in str(info.value)
    assert str(info.value) == ("cannot reach Redis at redis://:***@127.0.0.1:1/0: start "
                               "redis-server or pass --redis URL")


def test_rediss_url_uses_tls():
    client = redis.Redis.from_url("rediss://:pw@localhost:6380/0")
    assert client.connection_pool.connection_class is redis.connection.SSLConnection
    # connect() reaches the server through that TLS class; nothing listens there, so it fails cleanly.
    with pytest.raises(QueueError, match=r"rediss://:\*\*\*@127.0.0.1:1/0"):
        connect("rediss://:pw@127.0.0.1:1/0")
