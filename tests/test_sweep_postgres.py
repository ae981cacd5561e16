"""Two worker processes share one study in the local PostgreSQL (as producers on two machines)."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import optuna
import pytest

from pipeline.flow import RunConfig
from pipeline.measure.options import MeasureOptions
from pipeline.search.storage import load_trials, open_storage
from pipeline.search.loop import LoopSpec, run_loop, worker_spec

REPO = Path(__file__).resolve().parent.parent

SWEEP = """
method: random
metric: {name: Total_Latency, goal: minimize}
parameters:
  filter_pruner_50_desired_sparsity: {min: 0.1, max: 0.8}
  filter_pruner_20_desired_sparsity: {values: [0.2, 0.5]}
  epochs: {value: 0}
"""


@pytest.fixture
def postgres_study(postgres_url: str):
    """A unique study name in the test database, deleted afterwards."""
    storage = open_storage(postgres_url)
    name = f"edgeprune-test-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass


@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_share_one_postgres_study(settings, tmp_path, postgres_study,
                                                       postgres_url):
    sweep = tmp_path / "shared.yaml"
    sweep.write_text(SWEEP)
    spec = LoopSpec(sweep=str(sweep), settings=settings, out_dir=str(tmp_path / "out"), n_trials=4,
                    base=RunConfig(schedule=REPO / "schedules" / "resnet20_filter_rank.yaml",
                                   model="resnet20_cifar", eval_split="val", eval_subset=100),
                    storage=postgres_url, study_name=postgres_study, seed=0, timeout=300,
                    progress=False, measure_options=MeasureOptions.fast(), baselines=False)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        per_worker = pool.map(run_loop, [worker_spec(spec, i) for i in range(2)])
    assert all(per_worker), "each process ran at least one trial"
    records = load_trials(postgres_url, postgres_study)
    # Both checked the shared budget; at most one trial over it when they asked at the same time.
    assert 4 <= len(records) <= 5
    assert sorted(r.number for w in per_worker for r in w) == [r.number for r in records]
    assert all(r.status == "ok" and r.metrics["Total_Latency"] > 0 for r in records)
    study = optuna.load_study(study_name=postgres_study, storage=open_storage(postgres_url))
    workers = {t.user_attrs["record"]["worker"] for t in study.trials}
    assert len(workers) == 2


#: A worker "on another host" (its worker id names another machine) that hangs in its trial
#: until it is SIGKILLed, with a 1 s heartbeat on the shared study.
DYING_WORKER = """
import sys, time
from pathlib import Path
from pipeline.search import engine
from pipeline.search.config import load_sweep
from pipeline.search.storage import open_storage
url, name, out, sweep = sys.argv[1:5]
engine.socket.gethostname = lambda: "another-host"
config = load_sweep(sweep)
study = engine.open_study(config, open_storage(url, heartbeat_s=1, grace_s=2), name, seed=1)

def hang(context):
    print("started", flush=True)
    time.sleep(600)

engine.SweepRunner(config, study, hang, Path(out), n_trials=2).run()
"""

HEARTBEAT_SWEEP = """
method: random
metric: {name: Latency, goal: minimize}
parameters: {a: {min: 0.0, max: 1.0}}
"""


@pytest.mark.postgres
def test_trial_of_a_worker_that_died_elsewhere_is_failed_by_heartbeat_and_rerun(tmp_path, postgres_study,
                                                                               postgres_url):
    import subprocess
    import sys

    from pipeline.search.config import load_sweep
    from pipeline.search.engine import INTERRUPTED, SweepRunner, TrialOutcome, open_study
    from pipeline.search.storage import heartbeat_interval

    dying = subprocess.Popen([sys.executable, "-c", DYING_WORKER, postgres_url, postgres_study,
                              str(tmp_path), HEARTBEAT_SWEEP], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert dying.stdout.readline().strip() == "started"
    finally:
        dying.kill()
        dying.communicate()
    config = load_sweep(HEARTBEAT_SWEEP)
    storage = open_storage(postgres_url, heartbeat_s=1, grace_s=2)
    study = open_study(config, storage, postgres_study, seed=0)
    survivor = SweepRunner(config, study, lambda c: TrialOutcome("ok", {"Latency": c.params["a"]}),
                           tmp_path, n_trials=2, heartbeat_s=heartbeat_interval(storage))
    records = survivor.run()
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    dead = load_trials(postgres_url, postgres_study)[0]
    assert dead.status == "failed" and dead.reason == INTERRUPTED
    # The survivor ran its own trial and the dead one's again, with the same parameters.
    assert len(records) == 2 and all(r.status == "ok" for r in records)
    assert records[1].params == dead.params
