"""``edgeprune report`` of bad records or options: one ``Error:`` line, exit 2, nothing written
(issue 31: a NaN metric drew a broken pareto.png, string metrics and unknown names passed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.cli import main

OK = '{"number": 1, "status": "ok", "params": {"a": 0.2}, "metrics": {"Top1": 60.0, "Total_Latency": 2.0}}'
RECORDS = {
    "nan-top1": f'[{{"number": 0, "status": "ok", "params": {{"a": 0.1}}, "metrics": {{"Top1": NaN, "Total_Latency": 1.0}}}}, {OK}]',
    "inf-latency": f'[{{"number": 0, "status": "ok", "params": {{"a": 0.1}}, "metrics": {{"Top1": 50, "Total_Latency": Infinity}}}}, {OK}]',
    "string-top1": f'[{{"number": 0, "status": "ok", "params": {{"a": 0.1}}, "metrics": {{"Top1": "high", "Total_Latency": 1.0}}}}, {OK}]',
    "string-latency": f'[{{"number": 0, "status": "ok", "params": {{"a": 0.1}}, "metrics": {{"Top1": 50, "Total_Latency": "1.5"}}}}, {OK}]',
    "good": f"[{OK}]",
}

CASES = [
    ("nan-metric", ["{d}/nan-top1.json"], "Top1=nan"),
    ("inf-metric", ["{d}/inf-latency.json"], "Total_Latency=inf"),
    ("string-metric", ["{d}/string-top1.json"], "Top1='high'"),
    ("string-latency", ["{d}/string-latency.json"], "Total_Latency='1.5'"),
    ("unknown-metric", ["{d}/good.json", "--metric", "Bogus"], "--metric Bogus"),
    ("unknown-latency-metric", ["{d}/good.json", "--latency-metric", "Latncy"], "--latency-metric Latncy"),
    ("unknown-accuracy-metric", ["{d}/good.json", "--accuracy-metric", "Top9"], "--accuracy-metric Top9"),
    ("study-of-a-json-file", ["{d}/good.json", "--study", "nope"], "--study"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-report")
    for name, text in RECORDS.items():
        (root / f"{name}.json").write_text(text)
    return root


@pytest.mark.parametrize("case, argv, names", CASES, ids=[c[0] for c in CASES])
def test_bad_report_input_is_one_error_line_and_writes_nothing(inputs, tmp_path, monkeypatch, capsys,
                                                              case, argv, names):
    out = tmp_path / "report"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["edgeprune", "report", *[a.format(d=inputs) for a in argv],
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and names in errors[0], err
    assert "Traceback" not in err
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_unknown_study_of_a_stored_sweep_is_one_error_line(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "sweep"
    folder.mkdir()
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    optuna.create_study(study_name="s", storage=storage)
    done = subprocess.run([sys.executable, "-m", "edgeprune", "report", str(folder), "--study", "t",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("Error:") and "no study 't'" in done.stderr
    assert not (tmp_path / "r").exists()
