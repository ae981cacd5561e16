"""No credential is ever shown: URLs in errors, summaries and W&B run metadata are redacted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.errors import ECHO_LIMIT, MAX_MESSAGE, SweepError, UserError, shown
from pipeline.queue import connect
from pipeline.redact import redact_argv, redact_text, redact_url
from pipeline.search.storage import open_storage

POSTGRES_NO_DB = "postgresql://postgres:pgsecret@127.0.0.1:5432/edgeprune_no_such_db"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://postgres:pw1@127.0.0.1:5432/test", "postgresql://postgres:***@127.0.0.1:5432/test"),
    ("postgresql+psycopg2://u:p%40ss@db/x?sslmode=require", "postgresql+psycopg2://u:***@db/x?sslmode=require"),
    ("redis://:pw2@host:6380/1", "redis://:***@host:6380/1"),
    ("redis://host:6379/0?password=pw3&db=1", "redis://host:6379/0?password=***&db=1"),
    ("rediss://host/0?socket_timeout=5&PASSWORD=pw4", "rediss://host/0?socket_timeout=5&PASSWORD=***"),
    ("redis://:pw5@host:99999/0", "redis://:***@host:99999/0"),  # a bad port must not raise
    ("redis://u:a@b@host/0", "redis://u:***@host/0"),  # the last '@' ends the user part
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("sqlite:///x.db", "sqlite:///x.db"),
    ("redis://[:password@]host:port/db", "redis://[:password@]host:port/db"),  # a usage hint
    ("runs/sweeps/x", "runs/sweeps/x"),
])
def test_redact_url_masks_user_part_and_query_passwords(url, expected):
    assert redact_url(url) == expected


def test_free_text_and_command_lines_are_redacted():
    text = "cannot open 'postgresql://postgres:pw6@h/db' nor redis://h/0?password=pw7."
    assert redact_text(text) == "cannot open 'postgresql://postgres:***@h/db' nor redis://h/0?password=***."
    assert redact_argv(["producer", "--redis", "redis://:pw8@h:6379/0", "--redis=redis://:pw9@h"]) == \
        ["producer", "--redis", "redis://:***@h:6379/0", "--redis=redis://:***@h"]


def test_every_user_error_is_redacted_and_capped():
    assert "pw10" not in str(UserError("bad storage postgresql://postgres:pw10@h/db: fix it"))
    long = UserError("x" * 100_000 + ": use a shorter value")
    assert len(str(long)) <= MAX_MESSAGE + 60 and str(long).endswith("use a shorter value")
    assert len(shown("y" * 10_000)) <= ECHO_LIMIT + 60
    cyclic: list = []
    cyclic.append(cyclic)
    assert shown(cyclic) == "[[...]]"


def test_unopenable_postgres_storage_error_hides_the_password():
    with pytest.raises(SweepError) as info:
        open_storage(POSTGRES_NO_DB)
    assert "pgsecret" not in str(info.value)
    assert "postgresql://postgres:***@127.0.0.1:5432/edgeprune_no_such_db" in str(info.value)


def test_redis_query_password_never_shown():
    with pytest.raises(UserError) as info:
        connect("redis://127.0.0.1:1/0?password=qsecret")
    assert "qsecret" not in str(info.value) and "password=***" in str(info.value)


def test_cli_report_of_a_postgres_url_hides_the_password():
    proc = subprocess.run([sys.executable, "-m", "edgeprune", "report", POSTGRES_NO_DB],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "pgsecret" not in proc.stdout + proc.stderr and "postgres:***@" in proc.stderr


SWEEP = """
method: random
metric: {name: Total_Latency, goal: minimize}
parameters:
  filter_pruner_50_desired_sparsity: {min: 0.1, max: 0.8}
  epochs: {value: 0}
"""


@pytest.mark.postgres
def test_sweep_summary_hides_the_storage_password(tmp_path, monkeypatch, capsys):
    """A study already holding its trials: `sweep` runs none and prints its summary line."""
    import uuid

    import optuna

    from edgeprune.cli import main
    from pipeline.search.config import load_sweep
    from pipeline.search.engine import open_study

    url = "postgresql://postgres:sweepsecret@127.0.0.1:5432/test"
    name = f"edgeprune-test-{uuid.uuid4().hex[:10]}"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    study = open_study(load_sweep(sweep), open_storage(url), name, 0)
    record = {"status": "ok", "params": {"filter_pruner_50_desired_sparsity": 0.5, "epochs": 0},
              "metrics": {"Total_Latency": 1.0}}
    study.add_trial(optuna.trial.create_trial(
        params={"filter_pruner_50_desired_sparsity": 0.5},
        distributions={"filter_pruner_50_desired_sparsity": optuna.distributions.FloatDistribution(0.1, 0.8)},
        values=[1.0], user_attrs={"record": record}))
    try:
        monkeypatch.setattr(sys, "argv", [
            "edgeprune", "sweep", str(sweep), "--trials", "1", "--storage", url, "--study", name,
            "--out", str(tmp_path / "out"), "--model", "resnet20_cifar", "--schedule",
            "schedules/resnet20_filter_rank.yaml"])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"1 trials in study {name} (postgresql://postgres:***@127.0.0.1:5432/test)" in out
        assert "sweepsecret" not in out
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url))
