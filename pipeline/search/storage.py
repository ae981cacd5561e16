"""Where a study lives, and trial records read back from it.

Default: an Optuna journal file ``<out>/study.journal`` (embedded, nothing to start, safe for
several processes on one machine thanks to its file lock). A database URL
(``postgresql://postgres@127.0.0.1:5432/test``, ``sqlite:///x.db``) lets producers on several
machines share one study. Each trial keeps a ``TrialRecord`` in its user attributes, so
``load_trials`` rebuilds the records without knowing anything about the sweep.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from pydantic import ValidationError

from pipeline.errors import SweepError, shorten, shown
from pipeline.extras import require
from pipeline.messages import TrialRecord, parse_checked
from pipeline.redact import redact_url
from pipeline.status import TrialStatus

if TYPE_CHECKING:
    from .config import SweepConfig

JOURNAL_NAME = "study.journal"
#: User attribute holding the trial's record (a TrialRecord dict without ``number``).
RECORD_ATTR = "record"
#: Study user attribute prefix of a multi-fidelity rung's record: ``rung:<rung>:<trial number>``
#: (``fidelity``); ``load_trials`` shows a trial's highest finished rung in place of its rapid record.
RUNG_PREFIX = "rung:"
INTERRUPTED = "interrupted: the worker stopped before the trial finished; rerun with the same params"
#: A database study's running trials beat every this many seconds (Optuna's RDB heartbeat); one
#: silent for the grace period (its worker died, on whichever host) is failed by the next worker
#: that asks for a trial, and its parameters are queued again up to STALE_TRIAL_RETRIES times.
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
STALE_TRIAL_RETRIES = 2
_DB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "oracle", "mssql")
#: What Optuna raises replaying a damaged journal line (bad JSON, unknown op code, missing keys).
_CORRUPT_JOURNAL = (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError)


def is_database_url(storage: str) -> bool:
    return storage.split(":", 1)[0].split("+", 1)[0] in _DB_SCHEMES and "://" in storage


def check_storage(storage: str) -> str:
    """``storage`` if it is a database URL or a journal path; otherwise a SweepError before
    anything is created (``'::::'`` or ``ftp://x`` would become a folder of that name)."""
    if is_database_url(storage) or (storage.strip() and ":" not in storage):
        return storage
    raise SweepError(f"--storage {shown(redact_url(storage))} is neither a database URL nor a journal "
                     "path: pass postgresql://user@host:5432/db, sqlite:///study.db, or a file or "
                     "folder name without ':' (default: <out>/study.journal)")


def open_storage(storage: str | Path | None, out_dir: Path | None = None,
                 heartbeat_s: int = HEARTBEAT_INTERVAL_S, grace_s: int = GRACE_PERIOD_S) -> BaseStorage:
    """The study storage: a database URL, a journal file (or folder holding one), or ``out_dir``.

    A database's trials carry a heartbeat every ``heartbeat_s`` seconds, and are failed and rerun
    after ``grace_s`` without one. Optuna offers no heartbeat for journal files: a journal study
    lives on one machine, where a resumed sweep recovers the trials of dead processes by id.
    """
    if storage is None:
        if out_dir is None:
            raise SweepError("no study storage given: pass --out DIR (a journal file there) or "
                             "--storage postgresql://user@host:5432/db")
        storage = Path(out_dir)
    text = str(storage)
    if is_database_url(text):
        if text.startswith(("postgres://", "postgresql://")):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, the `postgres` extra.
            require("psycopg")
            text = "postgresql://" + text.split("://", 1)[1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(text, engine_kwargs={"pool_pre_ping": True},
                                  heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                      max_retry=STALE_TRIAL_RETRIES))
        except Exception as exc:  # SQLAlchemy raises many driver-specific types
            raise SweepError(f"study storage {redact_url(text)} cannot be opened ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0]}): check that the database server is "
                             "running and the URL names an existing database") from None
    path = Path(text)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / JOURNAL_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except _CORRUPT_JOURNAL as exc:  # Optuna replays every line on open; a damaged one fails here
        raise SweepError(f"{path}: the study journal has a damaged line ({type(exc).__name__}: "
                         f"{shorten(str(exc).splitlines()[0] if str(exc) else '')}): restore the "
                         "file or delete the broken line (each line is one JSON operation)") from None


def heartbeat_interval(storage: BaseStorage) -> int | None:
    """Seconds between the heartbeats of ``storage``'s running trials (None: it has none)."""
    return storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None


def was_interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial whose worker stopped before finishing it (failed by a heartbeat check or a resume)."""
    record = trial.user_attrs.get(RECORD_ATTR) or {}
    return record.get("reason") == INTERRUPTED or (
        trial.state == TrialState.FAIL and record.get("status", TrialStatus.RUNNING) == TrialStatus.RUNNING)


_STATUS_OF_STATE = {TrialState.COMPLETE: TrialStatus.OK, TrialState.PRUNED: TrialStatus.EARLY_STOPPED,
                    TrialState.FAIL: TrialStatus.FAILED}


def record_of(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """The TrialRecord kept in a trial's user attributes (a bare one for foreign trials)."""
    data: dict[str, Any] = dict(trial.user_attrs.get(RECORD_ATTR) or {})
    data["number"] = trial.number
    if was_interrupted(trial):
        data.update(status=TrialStatus.FAILED, reason=INTERRUPTED)
    if "status" not in data:
        data["status"] = _STATUS_OF_STATE.get(trial.state, TrialStatus.RUNNING)
    data.setdefault("params", dict(trial.params))
    if not data.get("started_at") and trial.datetime_start is not None:
        data["started_at"] = trial.datetime_start.timestamp()
    return check_record(data, f"trial {trial.number}")


def check_record(data: Any, where: str) -> TrialRecord:
    """A TrialRecord from a stored or user-given dict, each field of the right type (pydantic,
    strict: ``messages.parse_checked``), else a SweepError naming the field."""
    fix = "pass records as written by `edgeprune sweep --json`"
    if not isinstance(data, dict):
        raise SweepError(f"{where}: a trial record is a JSON object, got {type(data).__name__}: {fix}")
    try:
        return parse_checked(TrialRecord, json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            raise SweepError(f"{where}: the trial record has no {name!r}: {fix}") from None
        raise SweepError(f"{where}: {name}={shown(error['input'])} is not valid "
                         f"({error['msg'].lower()}): {fix}") from None


def load_trials(dir_or_url: str | Path, study_name: str | None = None) -> list[TrialRecord]:
    """Every started trial of a stored sweep as TrialRecords (in trial order).

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
    # Waiting trials (queued for a rerun) have not started: they are no record yet.
    started = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    promoted = promoted_records(study.user_attrs)
    return [check_record(dict(promoted[t.number], number=t.number), f"trial {t.number}")
            if t.number in promoted else record_of(t)
            for t in study.get_trials(deepcopy=False, states=started)]


def rung_key(rung: int, number: int) -> str:
    return f"{RUNG_PREFIX}{rung}:{number}"


def rung_entries(user_attrs: dict[str, Any], rung: int | None = None) -> dict[tuple[int, int], dict[str, Any]]:
    """(rung, trial number) -> finished rung record, of every rung or only ``rung`` (claims of
    running ones and released claims left out)."""
    entries = {}
    for key, record in user_attrs.items():
        if not key.startswith(RUNG_PREFIX) or not isinstance(record, dict) \
                or record.get("status") == TrialStatus.RUNNING:
            continue
        at, number = (int(part) for part in key[len(RUNG_PREFIX):].split(":"))
        if rung is None or at == rung:
            entries[(at, number)] = record
    return entries


def promoted_records(user_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> the record of its highest finished rung."""
    return {number: record for (_, number), record in sorted(rung_entries(user_attrs).items())}


def load_sweep_config(dir_or_url: str | Path, study_name: str | None = None) -> "SweepConfig | None":
    """The sweep YAML a stored study was created from (``open_study`` keeps it), or None for a
    study made without one."""
    from .config import load_sweep

    study = stored_study(dir_or_url, study_name)
    raw = study.user_attrs.get("sweep") if study is not None else None
    return load_sweep(raw) if isinstance(raw, dict) else None


def stored_study(dir_or_url: str | Path, study_name: str | None = None) -> optuna.Study | None:
    """The stored study named ``study_name`` (default: the storage's only one), or None."""
    storage = _existing_storage(dir_or_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    name = study_name or (names[0] if len(names) == 1 else None)
    if name not in names:
        return None
    return optuna.load_study(study_name=name, storage=storage)


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
