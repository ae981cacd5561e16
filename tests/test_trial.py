"""``pipeline.trial.run_trial`` on a real Redis: the outcome's status is a TrialStatus everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.flow import RunConfig
from pipeline.queue import JobQueue, connect
from pipeline.status import TrialStatus
from pipeline.trial import run_trial

RESNET20 = Path(__file__).resolve().parent.parent / "schedules" / "resnet20_filter_rank.yaml"


class RecordingTracker:
    """A Tracker that keeps what it was told."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        self.summary = dict(summary)


def test_a_trial_nobody_measures_fails_with_its_job_left_queued(redis_url, redis_prefix, settings,
                                                                 tmp_path):
    queue = JobQueue(connect(redis_url), redis_prefix)
    config = RunConfig(schedule=RESNET20, model="resnet20_cifar", epochs=0, eval_split="val",
                       eval_subset=50, params={"trial": 1})
    tracker = RecordingTracker()
    # No consumer serves this prefix: the wait ends at the timeout.
    outcome = run_trial(config, queue, settings, tmp_path / "run", timeout=1.0, tracker=tracker)
    assert outcome.timed_out and outcome.result is None and outcome.job_id
    assert outcome.status is TrialStatus.FAILED and outcome.job_id in outcome.reason
    assert outcome.produced.status is TrialStatus.OK
    # The tracker and result.json see plain strings, as before the enum.
    assert tracker.params == {"trial": 1}
    assert tracker.summary["status"] == "failed" and type(tracker.summary["status"]) is str
    assert tracker.summary["reason"] == outcome.reason and tracker.summary["job_id"] == outcome.job_id
    record = json.loads(outcome.result_path.read_text())
    assert record["status"] == "pending" and outcome.job_id in record["reason"]
    assert queue.status()["waiting"] == 1
