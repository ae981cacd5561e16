"""The W&B tracker in offline mode (no account): a real trial's run holds the summary metrics and
one history row per retraining epoch."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pipeline.flow import RunConfig, measure_work
from pipeline.measure.options import MeasureOptions
from pipeline.queue import open_queue
from pipeline.search.engine import TrialContext
from pipeline.search.tracking import WandbTracker
from pipeline.search.trials import make_trial_function

REPO = Path(__file__).resolve().parent.parent


#: W&B's transaction log (``run-<id>.wandb``) is a LevelDB-style log: a 7-byte file header, then
#: records of (crc32c u32, length u16, type u8) + payload in 32 KiB blocks; a payload that crosses
#: a block boundary is split into FIRST/MIDDLE/LAST pieces. wandb 0.31 no longer ships a Python
#: reader, so the test reads the format itself and decodes each payload with wandb's own protobuf.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(path: Path) -> Iterator[bytes]:
    data, pos, pieces = path.read_bytes(), _HEADER, b""
    assert data[:4] == b":W&B"
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer: zero padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pieces = chunk
        elif kind == _MIDDLE:
            pieces += chunk
        elif kind == _LAST:
            yield pieces + chunk


def offline_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, config) of an offline run, read back from its ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for payload in _payloads(next(run_dir.glob("run-*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run":
            for item in record.run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
    return summary, config


def offline_history(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """(step, row) of each history row of an offline run, in the order they were written."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in _payloads(next(run_dir.glob("run-*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                   for item in record.history.item}
            rows.append((record.history.step.num, row))
    return rows


def _wait_for_exit_record(run_dir: Path, limit_s: float = 60.0) -> None:
    """wandb's service finishes writing the run file after ``run.finish`` returns: wait for its
    last record (``exit``) before reading it."""
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for payload in _payloads(next(run_dir.glob("run-*.wandb"))):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            if record.WhichOneof("record_type") == "exit":
                return
        time.sleep(0.2)
    pytest.fail(f"{run_dir}: no exit record after {limit_s} s")


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch) -> Path:
    """WANDB_MODE=offline with its files under a temporary folder."""
    folder = tmp_path / "wandb-dir"
    folder.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return folder


@pytest.mark.slow
def test_offline_run_holds_the_summary_and_top1_per_epoch_with_the_epoch_as_step(settings, tmp_path,
                                                                                  wandb_offline):
    base = RunConfig(schedule=REPO / "schedules" / "resnet20_filter_rank.yaml", model="resnet20_cifar",
                     eval_split="val", eval_subset=100, subset=256, max_steps_per_epoch=1, batch_size=32)
    params = {"filter_pruner_50_desired_sparsity": 0.4, "epochs": 2}
    with open_queue(None, measure_work(settings, MeasureOptions.fast()), base.target) as queue:
        trial = make_trial_function(base, settings, queue, 300,
                                    lambda: WandbTracker(project="edgeprune-test", dir=wandb_offline))
        outcome = trial(TrialContext(0, params, tmp_path / "trial"))
    assert outcome.status == "ok", outcome.reason
    runs = list(wandb_offline.glob("wandb/offline-run-*"))
    assert len(runs) == 1
    # The summary is written by wandb's service after finish returns: read once it is all there.
    _wait_for_exit_record(runs[0])
    summary, config = offline_run(runs[0])
    for name in ("Latency", "Total_Latency", "Throughput", "Top1", "Top5", "Top1_before", "macs"):
        assert summary[name] == pytest.approx(outcome.metrics[name]), name
    assert summary["status"] == "ok"
    assert config["filter_pruner_50_desired_sparsity"] == 0.4 and config["epochs"] == 2
    # What W&B's hyperband reads: the sweep metric's history, one value per retraining epoch.
    history = offline_history(runs[0])
    epochs = [(step, row) for step, row in history if "epoch" in row]
    assert [step for step, _ in epochs] == [1, 2] and [row["epoch"] for _, row in epochs] == [1, 2]
    for _, row in epochs:
        assert 0.0 <= row["Top1"] <= 100.0 and row["loss"] > 0.0
    # Top1's history is the per-epoch curve alone: the deployed Top1 is in the summary only.
    assert [row["Top1"] for _, row in history if "Top1" in row] == [row["Top1"] for _, row in epochs]
    steps = [step for step, _ in history]
    assert steps == sorted(set(steps))  # every row a step of its own, in order


@pytest.mark.parametrize("sweep_file", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_agent_command_of_each_sweep_parses_in_the_producer(sweep_file):
    """Expand the sweep's command as ``wandb agent`` does (wandb's own helper) and let the
    producer command parse it: the extra --<instance>_<key>=<value> flags map onto the schedule."""
    import optuna
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    from edgeprune.commands.producer import producer
    from pipeline.search.config import load_sweep
    from pipeline.search.mapping import RUN_SETTINGS
    from pipeline.search.space import SearchSpace
    from producer.params import apply_sweep_params, parse_extra_args

    config = load_sweep(REPO / "sweeps" / sweep_file)
    params = SearchSpace(config).suggest(optuna.create_study().ask())
    params["edgeprune"] = config.parameters["edgeprune"].value if "edgeprune" in config.parameters else None
    params = {k: v for k, v in params.items() if v is not None}
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[config.program])
    words = []
    for word in config.command:
        words += macros[word[2:-1]] if word.startswith("${") else [word]
    assert words[:3] == ["/usr/bin/env", "edgeprune", "producer"]
    ctx = producer.make_context("producer", words[3:])
    run_settings: dict = {}
    overrides, recorded = apply_sweep_params(parse_extra_args(ctx.args), ctx.params["schedule_path"],
                                             run_settings)
    searched = [n for n in config.searched if n not in RUN_SETTINGS]
    assert len(overrides) == len(searched) and "edgeprune" not in recorded
    assert str(ctx.params["schedule_path"]) == config.command_option("--schedule")


def test_offline_run_records_no_password_of_the_command_line(wandb_offline, monkeypatch):
    """W&B keeps ``sys.argv`` as run metadata: a --redis password must not reach any run file."""
    monkeypatch.setattr("sys.argv", ["edgeprune", "producer", "--redis",
                                     "redis://:argvsecret@127.0.0.1:6379/0"])
    tracker = WandbTracker(project="edgeprune-test", dir=wandb_offline)
    tracker.log_params({"epochs": 0})
    tracker.log_metrics({"macs": 1.0})
    tracker.finish({"status": "failed",
                    "reason": "cannot reach Redis at redis://127.0.0.1:1/0?password=reasonsecret"})
    _wait_for_exit_record(next(wandb_offline.glob("wandb/offline-run-*")))
    files = [p for p in wandb_offline.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        data = path.read_bytes()
        assert b"argvsecret" not in data and b"reasonsecret" not in data, path
    summary, _ = offline_run(next(wandb_offline.glob("wandb/offline-run-*")))
    assert summary["reason"].endswith("password=***")
