"""Settings resolution and JSON messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.messages import ArtifactRef, Job, ModelFacts, Result, Target, TrialRecord, parse_checked
from pipeline.settings import Settings
from pipeline.status import JobStatus


def test_flags_beat_environment_beats_defaults(tmp_path: Path) -> None:
    env = {"EDGEPRUNE_DATA": str(tmp_path / "env-data"), "EDGEPRUNE_THREADS": "3",
           "EDGEPRUNE_SHARED": str(tmp_path)}
    from_env = Settings.load(env=env)
    assert from_env.data == tmp_path / "env-data" and from_env.threads == 3
    flagged = Settings.load(env=env, data=tmp_path / "flag-data")
    assert flagged.data_path == tmp_path / "flag-data"
    assert flagged.checkpoints_dir == tmp_path / "models"


def test_shared_folder_gives_default_paths(shared_dir: Path) -> None:
    settings = Settings.load(env={"EDGEPRUNE_SHARED": str(shared_dir)})
    assert settings.data_path == shared_dir / "data" / "cifar-10-binary.tar.gz"
    assert settings.data_path.is_file()


def test_bad_thread_count_is_a_user_error() -> None:
    with pytest.raises(UserError, match="EDGEPRUNE_THREADS"):
        Settings.load(env={"EDGEPRUNE_THREADS": "many"})


def test_job_and_result_round_trip_through_json() -> None:
    job = Job(job_id="j1", run_id="r1", artifact=ArtifactRef(uri="redis://k", sha256="ab", size=3),
              target=Target(backend="onnxruntime", precision="int8"),
              model=ModelFacts(macs=5, arch_signature="16-5"), params={"lr": 0.1})
    back = Job.from_json(job.to_json())
    assert back == job and isinstance(back.artifact, ArtifactRef) and back.target.name == "onnxruntime-CPU"
    result = Result(job_id="j1", run_id="r1", status="ok", metrics={"Top1": 80.5})
    assert Result.from_json(result.to_json()) == result
    record = TrialRecord(number=3, status="gated", params={"a": 1}, reason="too slow")
    assert TrialRecord.from_json(record.to_json()) == record


def test_result_status_is_a_job_status_on_the_same_wire_values() -> None:
    failed = Result(job_id="j", run_id="r", status=JobStatus.FAILED, error="why")
    assert json.loads(failed.to_json())["status"] == "failed"
    assert Result.from_json(failed.to_json()).status is JobStatus.FAILED
    # What an older consumer stored, a plain string, parses into the enum both ways.
    text = json.dumps({"job_id": "j", "run_id": "r", "status": "ok"})
    assert Result.from_json(text).status is JobStatus.OK and Result.from_json(text).ok
    assert parse_checked(Result, text).status is JobStatus.OK
    bad = text.replace('"ok"', '"done"')
    with pytest.raises(ValueError):
        Result.from_json(bad)
    with pytest.raises(ValueError):
        parse_checked(Result, bad)


def test_messages_ignore_unknown_fields_and_reject_non_objects() -> None:
    data = json.loads(Result(job_id="j", run_id="r", status="ok").to_json())
    data["from_the_future"] = 1
    assert Result.from_dict(data).job_id == "j"
    with pytest.raises(ValueError):
        Result.from_json("[1, 2]")


def test_replace_keeps_unset_paths_unset_and_resolves_the_tracker(tmp_path: Path) -> None:
    settings = Settings.load(env={"EDGEPRUNE_SHARED": str(tmp_path)})
    assert settings.replace(tracker="none").data is None
    assert settings.tracker_kind() == "none"
    under_agent = Settings.load(env={"WANDB_SWEEP_ID": "abc123"})
    assert under_agent.tracker_kind() == "wandb"
    assert under_agent.replace(tracker="none").tracker_kind() == "none"
    with pytest.raises(UserError, match="EDGEPRUNE_TRACKER"):
        Settings.load(env={"EDGEPRUNE_TRACKER": "mlflow"}).tracker_kind()
