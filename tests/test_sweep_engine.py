"""The local sweep engine end to end on ResNet20 + the mini data: CLI, resume, gate and cache,
early stopping."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from pipeline.flow import RunConfig, measure_work
from pipeline.measure.options import MeasureOptions
from pipeline.messages import TrialRecord
from pipeline.queue import open_queue
from pipeline.search.config import load_sweep
from pipeline.search.early_stop import EarlyStopper
from pipeline.search.engine import (INTERRUPTED, STATUSES, SweepRunner, TrialOutcome, best_trials,
                                    open_study)
from pipeline.search.gate import queue_measure
from pipeline.search.storage import load_trials, open_storage
from pipeline.search.trials import make_trial_function

REPO = Path(__file__).resolve().parent.parent
RESNET20 = REPO / "schedules" / "resnet20_filter_rank.yaml"

PARETO_SWEEP = """
# Test sweep: ResNet20 without retraining, latency against accuracy above a floor.
name: test-pareto
method: bayes
metric: {name: Top1, goal: maximize}
parameters:
  filter_pruner_50_desired_sparsity: {distribution: q_uniform, min: 0.1, max: 0.8, q: 0.1}
  filter_pruner_40_desired_sparsity: {min: 0.1, max: 0.7}
  round_to: {values: [1, 4]}
  epochs: {value: 0}
  edgeprune:
    value:
      metrics: [{name: Total_Latency, goal: minimize}, {name: Top1, goal: maximize}]
      constraints: ["Top1 >= 30"]
command: ["${env}", edgeprune, producer, --schedule, schedules/resnet20_filter_rank.yaml,
          --model, resnet20_cifar, "${args}"]
"""


def _sweep_args(settings, sweep: Path, out: Path, trials: int) -> list[str]:
    return ["sweep", str(sweep), "--trials", str(trials), "--out", str(out),
            "--schedule", str(RESNET20), "--model", "resnet20_cifar", "--eval-limit", "200",
            "--fast-measure", "--data", str(settings.data), "--cache-dir", str(settings.cache_dir),
            "--no-baselines", "--json"]  # references: tests/test_sweep_references.py


@pytest.mark.slow
def test_in_process_sweep_records_every_trial_and_resumes(settings, tmp_path):
    sweep = tmp_path / "pareto.yaml"
    sweep.write_text(PARETO_SWEEP)
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(cli, _sweep_args(settings, sweep, out, 4), catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert len(json.loads(first.output[first.output.index("["):])) == 4
    # Asking for 6 resumes the same study: two more trials, the first four untouched.
    second = runner.invoke(cli, _sweep_args(settings, sweep, out, 6), catch_exceptions=False)
    assert second.exit_code == 0, second.output
    records = load_trials(out)
    assert [r.number for r in records] == list(range(6))
    config = load_sweep(sweep)
    for record in records:
        assert record.status in STATUSES and record.status != "failed", record.reason
        assert set(record.params) >= {"filter_pruner_50_desired_sparsity", "round_to", "epochs"}
        assert record.compute_s > 0 and Path(record.run_dir, "result.json").is_file()
        if record.status == "ok":
            for name in ("Latency", "Total_Latency", "Throughput", "Top1", "Top5", "Top1_before",
                         "macs", "params"):
                assert isinstance(record.metrics[name], (int, float)), name
    front = best_trials(config, records)
    assert front and all(r.metrics["Top1"] >= 30 for r in front)
    # The study is multi-objective, with the constraint recorded on each trial.
    study = optuna.load_study(study_name="test-pareto", storage=open_storage(out))
    assert len(study.directions) == 2
    for trial, record in zip(study.trials, records):
        if record.status == "ok":
            assert (trial.constraints["Top1 >= 30"] <= 0) == (record.metrics["Top1"] >= 30)


GATED_SWEEP = """
method: random
metric: {name: Latency, goal: minimize, target: 0.000001}
parameters:
  filter_pruner_50_desired_sparsity: {values: [0.5]}
  epochs: {value: 1}
"""


def test_latency_gate_skips_retraining_and_cache_measures_an_architecture_once(settings, tmp_path):
    config = load_sweep(GATED_SWEEP)
    study = open_study(config, open_storage(tmp_path), "gate", seed=0)
    base = RunConfig(schedule=RESNET20, model="resnet20_cifar", max_steps_per_epoch=1,
                     eval_split="val", eval_subset=100)
    calls = []
    with open_queue(None, measure_work(settings, MeasureOptions.fast()), base.target) as queue:
        measured = queue_measure(queue, timeout=120)

        def counting(onnx_path, facts, target):
            calls.append(facts.arch_signature)
            return measured(onnx_path, facts, target)

        runner = SweepRunner(config, study, make_trial_function(base, settings, queue, 120),
                             tmp_path, n_trials=2, measure=counting, target=base.target)
        records = runner.run()
    assert [r.status for r in records] == ["gated", "gated"]
    assert len(calls) == 1 and runner.gate_measurements == 1  # second trial: cache hit
    for record in records:
        assert record.metrics["Latency"] > 0.000001 and "exceeds the target" in record.reason
        stages = json.loads(Path(record.run_dir, "result.json").read_text())["stage_seconds"]
        assert "gate" in stages and "retrain" not in stages
    # The architecture's latency is known, so the sampler learns from a gated trial too.
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_early_stopper_rules():
    median = EarlyStopper("median", min_peers=2)
    assert median.judge([50.0], [[60.0]]) is None  # too few peers
    assert "below the median 60.00%" in median.judge([50.0], [[55.0], [60.0], [70.0]])
    assert median.judge([65.0], [[55.0], [60.0], [70.0]]) is None
    config = load_sweep("""
method: random
metric: {name: Top1, goal: maximize}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
parameters: {a: {values: [1]}}
""")
    hyper = EarlyStopper("hyperband", config.early_terminate)
    assert config.early_terminate.brackets(8) == [1, 2, 4, 8]
    peers = [[50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]
    assert hyper.judge([10.0, 52.0], peers) is None  # 52 is 3rd of 4 at epoch 2: int(4/2) = 2 ahead
    # Epoch 3 is no band: judged at band 2 (threshold 60 of 70, 65, 60, 51, 50) by its best, 52.
    assert "outside the top 50%" in hyper.judge([10.0, 51.0, 52.0], [*peers, [65.0, 65.0]])
    assert hyper.judge([10.0, 66.0], peers) is None


def test_engine_stops_a_trial_below_the_median_and_records_why(tmp_path):
    config = load_sweep("""
method: random
metric: {name: Top1, goal: maximize}
parameters:
  quality: {values: [80, 90, 95, 10]}
  edgeprune: {value: {early_stop: median}}
""")
    study = open_study(config, open_storage(tmp_path), "median", seed=3)

    def train_like(context):
        # A stand-in for retraining: per-epoch validation Top1 rises towards the trial's quality.
        for epoch in range(3):
            if not context.on_epoch(epoch, context.params["quality"] * (epoch + 1) / 3):
                return TrialOutcome("early_stopped", {"epochs_run": epoch + 1})
        return TrialOutcome("ok", {"Top1": float(context.params["quality"])})

    for quality in (80, 90, 95, 10):
        study.enqueue_trial({"quality": quality})
    records = SweepRunner(config, study, train_like, tmp_path, n_trials=4).run()
    assert [r.status for r in records] == ["ok", "ok", "ok", "early_stopped"]
    assert "median rule" in records[-1].reason and records[-1].metrics["epochs_run"] == 1
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED


def test_interrupted_trial_is_failed_and_rerun_with_its_params(tmp_path):
    import socket
    import subprocess

    from pipeline.search.space import SearchSpace
    from pipeline.search.storage import RECORD_ATTR

    config = load_sweep("""
method: random
metric: {name: Latency, goal: minimize}
parameters: {a: {min: 0.0, max: 1.0}}
""")
    study = open_study(config, open_storage(tmp_path), "resume", seed=0)
    # A worker that died mid-trial: its trial is RUNNING and its process is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    trial = study.ask()
    params = SearchSpace(config).suggest(trial)
    trial.set_user_attr(RECORD_ATTR, {"params": params, "status": "running",
                                      "worker": f"{socket.gethostname()}:{dead.pid}"})
    runner = SweepRunner(config, study, lambda c: TrialOutcome("ok", {"Latency": c.params["a"]}),
                    tmp_path, n_trials=2)
    assert runner.recover_interrupted() == 1
    records = runner.run()
    everything = load_trials(tmp_path)
    assert everything[0].status == "failed" and everything[0].reason == INTERRUPTED
    assert records[0].params["a"] == params["a"]  # rerun first, with the same parameters
    assert len(records) == 2 and all(r.status == "ok" for r in records)


RANDOM_SWEEP = """
method: random
metric: {name: Latency, goal: minimize}
parameters: {a: {min: 0.0, max: 1.0}}
"""


def test_resumed_sweep_continues_with_new_proposals(tmp_path):
    config = load_sweep(RANDOM_SWEEP)

    def run(n_trials):
        # Each run opens the study afresh with the same default seed, as a rerun of the command does.
        study = open_study(config, open_storage(tmp_path), "resume", seed=0)
        return SweepRunner(config, study, lambda c: TrialOutcome("ok", {"Latency": c.params["a"]}),
                           tmp_path, n_trials=n_trials).run()

    first, resumed = run(4), run(8)
    assert len(first) == len(resumed) == 4
    assert not {r.params["a"] for r in first} & {r.params["a"] for r in resumed}
    # A fresh study with the same seed still draws the first run's proposals (reproducible).
    again = open_study(config, open_storage(tmp_path / "again"), "resume", seed=0)
    assert [SweepRunner(config, again, lambda c: TrialOutcome("ok", {"Latency": c.params["a"]}),
                        tmp_path, n_trials=1).run()[0].params["a"]] == [first[0].params["a"]]


def _sweep_descendants(parent: int) -> list:
    import psutil

    return psutil.Process(parent).children(recursive=True)


@pytest.mark.slow
def test_stopping_a_multi_worker_sweep_stops_its_workers(settings, tmp_path):
    # SIGTERM: the parent's own handler turns it into the KeyboardInterrupt that Ctrl-C (SIGINT)
    # raises anyway, so both reach the same stopping code; the SIGINT run (17 s) is not repeated.
    import psutil

    sweep = tmp_path / "random.yaml"
    sweep.write_text(RANDOM_WORKERS_SWEEP)
    out = tmp_path / "out"
    args = _sweep_args(settings, sweep, out, 20)
    args.remove("--json")
    parent = subprocess.Popen([sys.executable, "-m", "edgeprune", *args, "--workers", "2"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while sum(r.status == "running" for r in _trials_if_any(out)) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, parent.communicate()
            time.sleep(0.5)
        workers = _sweep_descendants(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=120)
        assert parent.returncode == 130, err
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running after the sweep stopped: {alive}"
    finally:
        for process in _sweep_descendants(parent.pid) if parent.poll() is None else []:
            process.kill()
        parent.kill()
        parent.communicate()
    # Each worker records its running trial as interrupted on the way out (rerun on resume); one
    # stopped mid-write is SIGKILLed after a grace period, and the resume recovers its trial by pid.
    assert any(r.reason == INTERRUPTED for r in load_trials(out)), err
    study = optuna.load_study(study_name="test-workers", storage=open_storage(out))
    SweepRunner(load_sweep(sweep), study, None, out, n_trials=20).recover_interrupted()
    records = load_trials(out)
    assert not [r for r in records if r.status == "running"], err


def _trials_if_any(out: Path) -> list:
    return load_trials(out) if (out / "study.journal").is_file() else []


RANDOM_WORKERS_SWEEP = """
name: test-workers
method: random
metric: {name: Total_Latency, goal: minimize}
parameters: {filter_pruner_50_desired_sparsity: {min: 0.1, max: 0.8}, epochs: {value: 0}}
"""


MODEL_SWEEP = """
method: random
metric: {name: Relative_Latency, goal: minimize}
parameters:
  model: {values: [resnet56_cifar, resnet20_cifar]}
  filter_pruner_50_desired_sparsity: {values: [0.3, 0.5]}
  filter_pruner_40_desired_sparsity: {values: [0.3, 0.5]}
  epochs: {value: 0}
"""


def _record(number: int, model: str, relative: float, top1: float) -> TrialRecord:
    return TrialRecord(number=number, status="ok",
                       params={"model": model, "filter_pruner_50_desired_sparsity": 0.5,
                               "filter_pruner_40_desired_sparsity": 0.3},
                       metrics={"Relative_Latency": relative, "Top1": top1, "measure_attempts": 1},
                       started_at=1000.0, finished_at=1010.0, compute_s=9.0)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_sweep_table_never_cuts_the_base_model_name(tmp_path, width):
    import io

    from pipeline.search.progress import ProgressTable

    sweep = tmp_path / "models.yaml"
    sweep.write_text(MODEL_SWEEP)
    stream = io.StringIO()
    table = ProgressTable(load_sweep(sweep), stream, width=width)
    table(_record(0, "resnet56_cifar", 0.41, 70.0))
    rows = [line for line in stream.getvalue().splitlines() if "best so far" not in line][1:]
    # Whole on one line where the width allows; wrapped (never cut) where it cannot.
    assert "resnet56_cifar" in stream.getvalue() or width < 80, stream.getvalue()
    assert "…" not in "".join(rows) and "0.410" in stream.getvalue()


def test_resumed_sweeps_best_so_far_counts_the_studys_earlier_trials(tmp_path):
    import io

    from pipeline.search.progress import ProgressTable

    sweep = tmp_path / "models.yaml"
    sweep.write_text(MODEL_SWEEP)
    stream = io.StringIO()
    table = ProgressTable(load_sweep(sweep), stream, width=120,
                          earlier=[_record(0, "resnet20_cifar", 0.2, 60.0)])
    table(_record(1, "resnet56_cifar", 0.5, 70.0))
    assert "best so far (minimize Relative_Latency): trial 0" in stream.getvalue(), stream.getvalue()


class _ScriptedWorker:
    """Stands in for a worker process: its trials run when the parent first waits on it."""

    def __init__(self, work):
        self.work, self.alive = work, True

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout=None) -> None:
        if self.alive:
            self.work()
            self.alive = False


def test_several_workers_print_one_table_counting_the_studys_earlier_trials(tmp_path, capsys):
    from pipeline.search.loop import LoopSpec, _follow

    sweep = tmp_path / "random.yaml"
    sweep.write_text(RANDOM_SWEEP)
    config = load_sweep(sweep)

    def trials(n_trials):
        study = open_study(config, open_storage(tmp_path), "one-table", seed=n_trials)
        SweepRunner(config, study, lambda c: TrialOutcome("ok", {"Latency": c.params["a"]}),
                    tmp_path, n_trials=n_trials).run()

    trials(2)  # an earlier run of the study
    earlier_best = min(r.metrics["Latency"] for r in load_trials(tmp_path))
    spec = LoopSpec(sweep=str(sweep), base=RunConfig(schedule=RESNET20), settings=None,
                    out_dir=str(tmp_path), n_trials=6, study_name="one-table")
    _follow(spec, [_ScriptedWorker(lambda: trials(4)), _ScriptedWorker(lambda: trials(6))])
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.split()[:2] == ["trial", "status"] for line in lines) == 1, lines
    rows = [line.split()[0] for line in lines if line.split()[1:2] == ["ok"]]
    assert sorted(rows) == ["2", "3", "4", "5"], lines  # each new trial once, the earlier ones not
    best = min(r.metrics["Latency"] for r in load_trials(tmp_path))
    assert f"{best:.3g}" in lines[-1] and best <= earlier_best
