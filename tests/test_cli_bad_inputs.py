"""Bad input a user can fix is one ``Error:`` line and exit 2 from the real CLI: no traceback,
nothing written (issue 17 item 8). Each case was first probed by hand and was a traceback, a
hang or a run blamed on the wrong stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from edgeprune.cli import main

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = str(REPO / "schedules" / "resnet20_filter_rank.yaml")
GOOD_RECORDS = '[{"number": 0, "status": "ok", "metrics": {"Top1": 50.0, "Total_Latency": 1.5}}]'


def _corrupt_journal(folder: Path) -> None:
    """A real study journal whose second line (a trial's operation) is damaged."""
    folder.mkdir()
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    optuna.create_study(study_name="s", storage=storage).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    lines = (folder / "study.journal").read_text().splitlines()
    lines[1] = '{"op_code": 4, GARBAGE'
    (folder / "study.journal").write_text("\n".join(lines) + "\n")


def _inputs(root: Path) -> None:
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "deep.yaml").write_text("[" * 5000 + "]" * 5000 + "\n")
    (root / "model.onnx").write_bytes(b"")
    (root / "ints.json").write_text("[1, 2]")
    (root / "badrec.json").write_text('[{"number": "x", "status": 5}]')
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "binary.json").write_bytes(bytes(range(256)) * 4)
    (root / "good.json").write_text(GOOD_RECORDS)
    (root / "a_file").write_text("in the way")
    _corrupt_journal(root / "sweep")


#: (case, argv with {d} for the inputs folder, what the error line names, written paths that must not exist)
CASES = [
    ("binary-schedule", ["schedule", "check", "{d}/binary.yaml"], "not a UTF-8 text file", []),
    ("deep-schedule", ["schedule", "check", "{d}/deep.yaml"], "nesting deeper than", []),
    ("binary-sweep", ["sweep", "{d}/binary.yaml", "--out", "{d}/o"], "not a UTF-8 text file", ["o"]),
    ("deep-sweep", ["sweep", "{d}/deep.yaml", "--out", "{d}/o"], "nesting deeper than", ["o"]),
    ("timeout-nan", ["producer", "--schedule", SCHEDULE, "--timeout", "nan", "--out", "{d}/o"],
     "'nan' is not a finite number", ["o"]),
    ("lr-nan", ["run", "--schedule", SCHEDULE, "--lr", "nan", "--out", "{d}/o"],
     "'nan' is not a finite number", ["o"]),
    ("kd-weight-nan", ["run", "--schedule", SCHEDULE, "--kd-weight", "nan", "--out", "{d}/o"],
     "'nan' is not a finite number", ["o"]),
    ("kd-temperature-inf", ["sweep", "{d}/binary.yaml", "--kd-temperature", "inf"], "'inf' is not a finite", []),
    ("min-time-inf", ["bench", "{d}/model.onnx", "--min-time", "inf", "--out", "{d}/o.json"],
     "'inf' is not a finite number", ["o.json"]),
    ("sweep-timeout-inf", ["sweep", "{d}/binary.yaml", "--timeout", "inf"], "'inf' is not a finite", []),
    ("min-top1-nan", ["report", "{d}/good.json", "--min-top1", "nan", "--out", "{d}/o"], "finite", ["o"]),
    ("threads-negative", ["bench", "{d}/model.onnx", "--threads", "-4"], "'--threads'", []),
    ("cuda-missing", ["run", "--schedule", SCHEDULE, "--torch-device", "cuda:7", "--out", "{d}/o"],
     "torch device cuda:7", ["o"]),
    ("device-unknown", ["run", "--schedule", SCHEDULE, "--torch-device", "gpu", "--out", "{d}/o"],
     "'gpu' is not a device name", ["o"]),
    ("redis-bad-port", ["queue", "status", "--redis", "redis://:portsecret@127.0.0.1:99999/0"],
     "Port out of range", []),
    ("corrupt-journal", ["report", "{d}/sweep", "--out", "{d}/o"], "damaged line", ["o"]),
    ("records-not-objects", ["report", "{d}/ints.json", "--out", "{d}/o"], "record 0", ["o"]),
    ("record-bad-field", ["report", "{d}/badrec.json", "--out", "{d}/o"], "number='x'", ["o"]),
    ("records-deep-json", ["report", "{d}/deep.json", "--out", "{d}/o"], "RecursionError", ["o"]),
    ("records-binary", ["report", "{d}/binary.json", "--out", "{d}/o"], "UnicodeDecodeError", ["o"]),
    ("out-is-a-file", ["report", "{d}/good.json", "--out", "{d}/a_file"], "a file is in the way", []),
    ("out-is-a-device", ["report", "{d}/good.json", "--out", "/dev/full"], "a file is in the way", []),
]


def _run(argv: list[str], cwd: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``python -m edgeprune`` in a child process (for what needs its own stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGEPRUNE_DEVICE", None)
    return subprocess.run([sys.executable, "-m", "edgeprune", *argv], cwd=cwd, env=env,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)


def _main(argv: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """The console entry point ``edgeprune.cli.main`` in this process (a traceback fails the test)."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("EDGEPRUNE_DEVICE", raising=False)
    monkeypatch.setattr(sys, "argv", ["edgeprune", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, info.value.code, captured.out, captured.err)


def _assert_one_error_line(proc: subprocess.CompletedProcess, names: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and names in errors[0], proc.stderr
    assert "secret" not in proc.stderr


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    _inputs(root)
    return root


@pytest.mark.parametrize("case, argv, names, written", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing(inputs, tmp_path, monkeypatch, capsys, case,
                                                       argv, names, written):
    before = sorted(p.name for p in inputs.iterdir())
    proc = _main([a.format(d=inputs) for a in argv], tmp_path, monkeypatch, capsys)
    _assert_one_error_line(proc, names)
    assert list(tmp_path.iterdir()) == [], "nothing written in the working folder (runs/, report/)"
    assert sorted(p.name for p in inputs.iterdir()) == before
    assert not any((inputs / w).exists() for w in written)


def test_disk_full_on_stdout_is_one_error_line(inputs, tmp_path):
    with open("/dev/full", "w") as full:
        proc = _run(["report", str(inputs / "good.json"), "--json", "--out", str(tmp_path / "r")],
                    cwd=tmp_path, stdout=full)
    _assert_one_error_line(proc, "No space left on device")


@pytest.fixture
def immutable_dir(tmp_path) -> Path:
    """A folder nothing can be written into, even by root (``chattr +i``)."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
        pytest.skip("chattr +i is not available on this file system")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("argv", [
    ["report", "{d}/good.json", "--out", "{i}/report"],
    ["run", "--schedule", SCHEDULE, "--model", "resnet20_cifar", "--cache-dir", "{i}/cache",
     "--out", "{d}/run-out"],
], ids=["report-out", "run-cache-dir"])
def test_immutable_output_or_cache_dir_is_one_error_line(inputs, immutable_dir, tmp_path, monkeypatch,
                                                        capsys, argv):
    work = tmp_path / "cwd"
    work.mkdir()
    proc = _main([a.format(d=inputs, i=immutable_dir) for a in argv], work, monkeypatch, capsys)
    _assert_one_error_line(proc, "Operation not permitted")
    assert list(immutable_dir.iterdir()) == [] and list(work.iterdir()) == []
    assert not (inputs / "run-out").exists()
