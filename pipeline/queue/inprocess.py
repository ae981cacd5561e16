"""The queue without a server: ``submit`` runs the work at once, in the caller's thread.

Like RQ's ``Queue(is_async=False)``: the producer's calls are those of ``JobQueue`` (``submit``,
then ``result``/``wait_result``), so ``edgeprune run``, baselines and sweeps without ``--redis``
take the same ``Job``/``Result`` path as distributed agents, with nothing between them to run.

What still matches a remote consumer: the job is checked as a stream entry is (``parse_entry``:
job id, field types, target) and the work gets the job parsed back from its JSON message, not
the producer's object; the Result is stored as its JSON and parsed back with every field checked.
The artifact size limit (``QueueConfig.max_artifact_bytes``, ``--max-artifact-mb``) holds too,
so a model too big to travel is refused here as it would be by ``JobQueue.submit``.
What does not: there is no artifact store, so the work reads the producer's file itself and
``job.artifact`` stays as the producer left it (empty; no consumer code reads it); there are no
retries, heartbeats or dead letters (a failed job fails at once), and the rest of ``QueueConfig``
(timeouts, attempts, store, TTLs) has nothing to apply to.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from ..errors import QueueError
from ..messages import Job, Result, Target, parse_checked
from .artifacts import check_size
from .config import QueueConfig
from .entries import check_job_id, parse_entry, shown
from .worker import WorkFn, run_work

log = logging.getLogger(__name__)

#: ``Result.consumer`` of an in-process job: ``<host>:in-process``.
CONSUMER_NAME = "in-process"
#: The timeout to wait for an in-process job's result: ``submit`` returns with it stored.
NO_WAIT_S = 0.0


class InProcessQueue:
    """Runs ``work`` on each job of ``target`` as it is submitted and keeps its Result by job id;
    of ``config`` only the artifact size limit applies."""

    def __init__(self, work: WorkFn, target: Target | None = None,
                 config: QueueConfig | None = None) -> None:
        self.work = work
        self.target = target or Target()
        self.config = config or QueueConfig()
        self.identity = f"{socket.gethostname()}:{CONSUMER_NAME}"
        self._results: dict[str, Result] = {}

    def submit(self, job: Job, onnx_path: Path, retry_s: float = 0.0) -> Job:
        """Run the work on ``job`` now and store its Result; returns ``job``.

        A job for another target, one a consumer would refuse (``BadEntry``), or a model file
        over the artifact limit (``ArtifactError``) raises a ``QueueError`` and runs nothing.
        ``retry_s`` is ``JobQueue``'s, for the same call: there is no server to wait for here.
        ``JobInterrupted`` and ``KeyboardInterrupt`` go on, storing nothing.
        """
        if job.target.name != self.target.name:
            raise QueueError(f"job {shown(job.job_id)} is for {job.target.name}, but this process "
                             f"measures on {self.target.name}: pass --redis URL and start a "
                             "consumer for that target")
        # The checks a consumer makes on a stream entry, job id included.
        received = parse_entry({"job": job.to_json()}, self.target.name)
        onnx_path = Path(onnx_path)
        check_size(onnx_path.stat().st_size, self.config.max_artifact_bytes, f"{onnx_path.name} is")
        log.info("job %s: running in this process", job.job_id)
        result = run_work(self.work, received, onnx_path)
        result.consumer = self.identity
        self._results[job.job_id] = parse_checked(Result, result.to_json())
        return job

    def result(self, job_id: str) -> Result | None:
        """The Result of ``job_id``, or None for a job never submitted here."""
        return self._results.get(check_job_id(job_id))

    def wait_result(self, job_id: str, timeout: float) -> Result | None:
        """The Result of ``job_id`` at once: ``submit`` already ran the job (``timeout`` unused)."""
        return self.result(job_id)
