"""A bare install sweeps: the sweep path imports no plotting or fitting library (issue 31 item 5).

The sweep runs in a subprocess where matplotlib and scikit-learn cannot be imported (their
``sys.modules`` entries are None, which makes both ``import`` and ``importlib.util.find_spec`` treat
them as absent), as on ``pip install edgeprune`` without the ``report`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESNET20 = REPO / "schedules" / "resnet20_filter_rank.yaml"

SWEEP = """
method: random
metric: {name: Top1, goal: maximize}
parameters:
  filter_pruner_50_desired_sparsity: {values: [0.3, 0.5]}
  epochs: {value: 0}
"""

#: Runs the CLI with the report extra's packages hidden.
BLOCKED = ("import sys\n"
           "for name in ('matplotlib', 'matplotlib.pyplot', 'sklearn', 'sklearn.ensemble'):\n"
           "    sys.modules[name] = None\n"
           "from edgeprune.cli import main\n"
           "sys.argv = ['edgeprune'] + sys.argv[1:]\n"
           "main()\n")


def test_two_trial_local_sweep_runs_without_matplotlib_or_sklearn(settings, tmp_path):
    sweep = tmp_path / "bare.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "out"
    args = ["sweep", str(sweep), "--trials", "2", "--out", str(out), "--schedule", str(RESNET20),
            "--model", "resnet20_cifar", "--eval-limit", "100", "--fast-measure",
            "--data", str(settings.data), "--cache-dir", str(settings.cache_dir),
            "--no-baselines", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", BLOCKED, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(done.stdout[done.stdout.index("["):])
    assert len(records) == 2 and all(r["status"] != "failed" for r in records), records
    assert "matplotlib" not in done.stderr


def test_report_without_matplotlib_names_the_extra(tmp_path):
    """Drawing is where matplotlib is needed: there its absence is one line naming the extra."""
    code = ("import sys\nsys.modules['matplotlib'] = None\n"
            "import pipeline.report, pipeline.report.analysis\n"
            "from pipeline.extras import MissingExtraError\n"
            "from pipeline.messages import TrialRecord\n"
            "trials = [TrialRecord(number=0, status='ok', metrics={'Top1': 50.0, 'Total_Latency': 1.0})]\n"
            "try:\n    pipeline.report.build_report(trials, sys.argv[1])\n"
            "except MissingExtraError as exc:\n    print('refused:', exc)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused:" in done.stdout and "edgeprune[report]" in done.stdout
