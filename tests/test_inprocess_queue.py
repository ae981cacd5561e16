"""The in-process queue: ``submit`` runs the work in the caller's thread, ``wait_result`` answers at
once, failures are captured as the consumer's Worker captures them (``run_work``)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from pipeline.errors import BenchmarkError, QueueError
from pipeline.messages import ArtifactRef, Job, Result, Target
from pipeline.queue import (ArtifactError, InProcessQueue, JobInterrupted, JobQueue, QueueConfig,
                            check_only, open_queue)
from pipeline.status import JobStatus

TARGET = Target(backend="openvino", device="CPU")


def new_job(target: Target = TARGET, job_id: str | None = None) -> Job:
    return Job(job_id=uuid.uuid4().hex if job_id is None else job_id, run_id="run-" + uuid.uuid4().hex[:6],
               artifact=ArtifactRef(uri="", sha256="", size=0), target=target, params={"p": 0.5})


class Recording:
    """A work function that keeps what it was given, then runs ``check_only`` or raises ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple[Job, Path, str]] = []

    def __call__(self, job: Job, onnx_path: Path) -> Result:
        self.calls.append((job, onnx_path, threading.current_thread().name))
        if self.error is not None:
            raise self.error
        return check_only(job, onnx_path)


def test_the_job_runs_at_submit_in_the_callers_thread(onnx_file):
    work = Recording()
    queue = InProcessQueue(work, TARGET)
    job = new_job()
    assert queue.submit(job, onnx_file) is job
    # Already done when submit returns, in this thread, on the producer's own file.
    assert len(work.calls) == 1
    received, path, thread = work.calls[0]
    assert path == onnx_file and thread == threading.current_thread().name
    # The work got the job as a consumer would: parsed back from its JSON, not the producer's object.
    assert received == job and received is not job
    result = queue.wait_result(job.job_id, timeout=0)
    assert result is not None and result.ok and result.status is JobStatus.OK
    assert result.job_id == job.job_id and result.metrics["onnx_bytes"] == onnx_file.stat().st_size
    assert result.consumer.endswith(":in-process")
    assert 0 < result.started_at <= result.finished_at
    assert queue.result(uuid.uuid4().hex) is None  # never submitted


def test_a_user_error_is_a_failed_result_with_its_message(onnx_file):
    queue = InProcessQueue(Recording(BenchmarkError("model has a dynamic axis: export it fixed")), TARGET)
    job = queue.submit(new_job(), onnx_file)
    result = queue.wait_result(job.job_id, timeout=0)
    assert result.status is JobStatus.FAILED and not result.ok
    assert result.error == "model has a dynamic axis: export it fixed" and result.metrics == {}


def test_any_other_exception_is_a_failed_result_naming_its_type(onnx_file):
    queue = InProcessQueue(Recording(ZeroDivisionError("division by zero")), TARGET)
    job = queue.submit(new_job(), onnx_file)
    result = queue.result(job.job_id)
    assert result.status is JobStatus.FAILED and result.error == "ZeroDivisionError: division by zero"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), JobInterrupted()])
def test_an_interrupt_goes_on_and_stores_nothing(onnx_file, interrupt):
    work = Recording(interrupt)
    queue = InProcessQueue(work, TARGET)
    job = new_job()
    with pytest.raises(type(interrupt)):
        queue.submit(job, onnx_file)
    assert len(work.calls) == 1 and queue.result(job.job_id) is None


@pytest.mark.parametrize("job_id", ["../etc", "a:b", "", "x" * 65])
def test_a_bad_job_id_is_refused_before_the_work_runs(onnx_file, job_id):
    work = Recording()
    queue = InProcessQueue(work, TARGET)
    with pytest.raises(QueueError, match="job id"):
        queue.submit(new_job(job_id=job_id), onnx_file)
    assert work.calls == []
    with pytest.raises(QueueError, match="job id"):
        queue.result(job_id)


def test_a_job_for_another_target_is_refused(onnx_file):
    work = Recording()
    queue = InProcessQueue(work, TARGET)
    with pytest.raises(QueueError, match="openvino-GPU.*pass --redis"):
        queue.submit(new_job(Target(backend="openvino", device="GPU")), onnx_file)
    assert work.calls == []


def test_a_model_over_the_artifact_limit_is_refused(onnx_file):
    work = Recording()
    queue = InProcessQueue(work, TARGET, QueueConfig(max_artifact_bytes=1024))
    with pytest.raises(ArtifactError, match=r"tiny.onnx is 0\.\d MiB, over the 0.0009766 MiB artifact "
                                            "limit: raise --max-artifact-mb"):
        queue.submit(new_job(), onnx_file)
    assert work.calls == []


def test_open_queue_is_in_process_without_a_url_and_redis_with_one(redis_url, redis_prefix):
    with open_queue(None, check_only, TARGET) as queue:
        assert isinstance(queue, InProcessQueue) and queue.target == TARGET
    with open_queue(redis_url, check_only, TARGET, prefix=redis_prefix) as queue:
        assert isinstance(queue, JobQueue) and queue.keys.prefix == redis_prefix
