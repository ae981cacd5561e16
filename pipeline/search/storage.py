"""Where a study lives, and trial records read back from it.

Default: an Optuna journal file ``<out>/study.journal`` (embedded, nothing to start, safe for
several processes on one machine thanks to its file lock). A database URL
(``postgresql://postgres@127.0.0.1:5432/test``, ``sqlite:///x.db``) lets producers on several
machines share one study. Each trial keeps a ``TrialRecord`` in its user attributes, so
``load_trials`` rebuilds the records without knowing anything about the sweep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from pipeline.errors import SweepError
from pipeline.messages import TrialRecord
from pipeline.redact import redact_url

JOURNAL_NAME = "study.journal"
#: User attribute holding the trial's record (a TrialRecord dict without ``number``).
RECORD_ATTR = "record"
_DB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "oracle", "mssql")


def is_database_url(storage: str) -> bool:
    return storage.split(":", 1)[0].split("+", 1)[0] in _DB_SCHEMES and "://" in storage


def open_storage(storage: str | Path | None, out_dir: Path | None = None) -> BaseStorage:
    """The study storage: a database URL, a journal file (or folder holding one), or ``out_dir``."""
    if storage is None:
        if out_dir is None:
            raise SweepError("no study storage given: pass --out DIR (a journal file there) or "
                             "--storage postgresql://user@host:5432/db")
        storage = Path(out_dir)
    text = str(storage)
    if is_database_url(text):
        for plain in ("postgres://", "postgresql://"):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2.
            if text.startswith(plain):
                text = "postgresql+psycopg2://" + text[len(plain):]
        try:
            return RDBStorage(text, engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:  # SQLAlchemy raises many driver-specific types
            raise SweepError(f"study storage {redact_url(text)} cannot be opened ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0]}): check that the database server is "
                             "running and the URL names an existing database") from None
    path = Path(text)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / JOURNAL_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def record_of(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """The TrialRecord kept in a trial's user attributes (a bare one for foreign trials)."""
    data: dict[str, Any] = dict(trial.user_attrs.get(RECORD_ATTR) or {})
    data["number"] = trial.number
    if "status" not in data:
        data["status"] = {"COMPLETE": "ok", "PRUNED": "early_stopped", "FAIL": "failed"}.get(
            trial.state.name, "running")
    data.setdefault("params", dict(trial.params))
    if not data.get("started_at") and trial.datetime_start is not None:
        data["started_at"] = trial.datetime_start.timestamp()
    return TrialRecord.from_dict(data)


def load_trials(dir_or_url: str | Path, study_name: str | None = None) -> list[TrialRecord]:
    """Every trial of a stored sweep as TrialRecords (in trial order).

    ``dir_or_url``: the sweep's ``--out`` folder, its journal file, or the database URL;
    ``study_name`` may be left out when the storage holds one study.
    """
    storage = _existing_storage(dir_or_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name is None:
        if len(names) != 1:
            raise SweepError(f"{dir_or_url} holds {len(names)} studies ({', '.join(names)}): "
                             "name one with --study")
        study_name = names[0]
    elif study_name not in names:
        raise SweepError(f"{dir_or_url} has no study {study_name!r}: use one of "
                         f"{', '.join(names) or '(none)'}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [record_of(t) for t in study.get_trials(deepcopy=False)]


def _existing_storage(dir_or_url: str | Path) -> BaseStorage:
    text = str(dir_or_url)
    if not is_database_url(text):
        path = Path(text)
        journal = path / JOURNAL_NAME if path.is_dir() else path
        if not journal.is_file():
            raise SweepError(f"{dir_or_url}: no sweep found (no {JOURNAL_NAME}): give the folder "
                             "passed to `edgeprune sweep --out`, or the --storage URL")
    return open_storage(dir_or_url)


def json_safe(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into strings (numpy scalars into floats)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
