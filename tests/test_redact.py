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
    assert "postgresql+psycopg2://postgres:***@127.0.0.1:5432/edgeprune_no_such_db" in str(info.value)


def test_redis_query_password_never_shown():
    with pytest.raises(UserError) as info:
        connect("redis://127.0.0.1:1/0?password=qsecret")
    assert "qsecret" not in str(info.value) and "password=***" in str(info.value)


def test_cli_report_of_a_postgres_url_hides_the_password():
    proc = subprocess.run([sys.executable, "-m", "edgeprune", "report", POSTGRES_NO_DB],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "pgsecret" not in proc.stdout + proc.stderr and "postgres:***@" in proc.stderr
