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
SCHEDULE20_56 = str(REPO / "schedules" / "resnet56_filter_rank.yaml")
#: ``run`` of ResNet20 with its schedule: refusals must come before the (seconds-long) pruning.
RUN20 = ["run", "--model", "resnet20_cifar", "--schedule", SCHEDULE]
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
    _issue31_inputs(root)


#: A schedule whose top-level key would paint the terminal and forge a second error line.
EVIL_KEY = "\x1b[31mred\r\nError: forged"
SWEEP = REPO / "sweeps" / "01_rapid_latency.yaml"


def _latency_model(model_name: str, coefficient: float = 0.01, **changes: object) -> str:
    """A latency model file of ``model_name`` (every coefficient ``coefficient``) with ``changes``
    applied."""
    import json

    from pipeline.latency import shapes_of_module
    from pipeline.latency.features import FeatureSpec, groups_of
    from pipeline.models import create_model

    groups = groups_of(shapes_of_module(create_model(model_name)))
    data = {"version": 2, "target": {"backend": "openvino", "device": "CPU", "precision": "fp32"},
            "model_name": model_name, "groups": groups, "simd_block": 16,
            "coefficients": [coefficient] * len(FeatureSpec(tuple(groups), 16).names), "reference_ms": 1.0}
    data.update(changes)
    return json.dumps(data)


def _issue31_inputs(root: Path) -> None:
    """The bad inputs of issue 31's "Bad inputs" list (each was a traceback, a hang, a silent
    acceptance or a late refusal before its fix)."""
    import json

    from pipeline.export import export_onnx
    from pipeline.models import create_model

    (root / "dangling").symlink_to(root / "nowhere" / "out")
    (root / "empty_dir").mkdir()
    (root / "a_folder.yaml").mkdir()
    os.mkfifo(root / "fifo.yaml")
    text = Path(SCHEDULE).read_text()
    (root / "duplicate.yaml").write_text(text.replace("version: 1\n", "version: 1\nround_to: 2\nround_to: 4\n"))
    (root / "evil_key.yaml").write_text(json.dumps({"version": 1, EVIL_KEY: 1}))
    pruners = "".join(f"  p{i}: {{class: L1RankedStructureParameterPruner, group_type: Filters, "
                      f"desired_sparsity: 0.5, weights: [module.layer1.0.conv1.weight]}}\n" for i in range(20_000))
    (root / "many_pruners.yaml").write_text(f"version: 1\npruners:\n{pruners}policies: []\n")
    sweep = SWEEP.read_text()
    (root / "escaping_sweep.yaml").write_text(sweep.replace("name: resnet56-rapid-latency",
                                                            "name: ../../escaped"))
    (root / "simd0.json").write_text(_latency_model("resnet56_cifar", simd_block=0))
    (root / "nan.json").write_text(_latency_model("resnet56_cifar", reference_ms=float("nan")))
    (root / "negative.json").write_text(_latency_model("resnet56_cifar", reference_ms=-1.0))
    (root / "overflow.json").write_text(_latency_model("resnet56_cifar", coefficient=float("inf")))
    (root / "lm56.json").write_text(_latency_model("resnet56_cifar"))
    export_onnx(create_model("resnet20_cifar").eval(), root / "resnet20.onnx")
    _two_input_onnx(root / "two_inputs.onnx")
    (root / "garbage.th").write_bytes(b"not a checkpoint")


def _two_input_onnx(path: Path) -> None:
    """A valid ONNX model with two image inputs (x + y)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 32, 32]) for n in ("x", "y")]
    output = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "two", inputs, [output])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


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
    # Issue 31: targets are refused before pruning, as `bench` refuses them.
    ("run-device-npu", [*RUN20, "--device", "NPU", "--out", "{d}/o"], "'NPU'", ["o"]),
    ("run-device-empty", [*RUN20, "--device", "", "--out", "{d}/o"], "device ''", ["o"]),
    ("run-device-hetero-unknown", [*RUN20, "--device", "HETERO:FOO,BAR", "--out", "{d}/o"], "FOO", ["o"]),
    ("run-onnxruntime-gpu", [*RUN20, "--backend", "onnxruntime", "--device", "GPU", "--out", "{d}/o"],
     "'GPU'", ["o"]),
    ("sweep-device-npu", ["sweep", str(SWEEP), "--device", "NPU", "--out", "{d}/o"], "'NPU'", ["o"]),
    # paths
    ("run-out-dangling-symlink", [*RUN20, "--out", "{d}/dangling"], "symlink", ["nowhere"]),
    ("run-out-existing-empty-folder", [*RUN20, "--out", "{d}/empty_dir"], "already exists", []),
    ("run-checkpoint-missing", [*RUN20, "--checkpoint", "/nonexistent.th", "--out", "{d}/o"],
     "/nonexistent.th", ["o"]),
    ("sweep-storage-colons", ["sweep", str(SWEEP), "--storage", "::::", "--out", "{d}/o"], "'::::'", ["o"]),
    ("sweep-name-escapes", ["sweep", "{d}/escaping_sweep.yaml"], "name", []),
    ("sweep-study-escapes", ["sweep", str(SWEEP), "--study", "../../x"], "--study", []),
    ("sweep-study-separator", ["sweep", str(SWEEP), "--study", "a/b", "--out", "{d}/o"], "--study", ["o"]),
    # numbers
    ("run-epochs-huge", [*RUN20, "--epochs", "99999999999999999999999", "--out", "{d}/o"], "epochs", ["o"]),
    ("sweep-epochs-huge", ["sweep", str(SWEEP), "--epochs", "99999999999999999999999"], "epochs", []),
    ("run-round-to-above-every-layer", [*RUN20, "--set", "round_to=100000", "--out", "{d}/o"],
     "round_to", ["o"]),
    # schedules: duplicate keys, non-files, sizes, control characters
    ("schedule-duplicate-key", ["schedule", "check", "{d}/duplicate.yaml"], "round_to", []),
    ("run-schedule-duplicate-key", ["run", "--schedule", "{d}/duplicate.yaml", "--model", "resnet20_cifar",
                                    "--out", "{d}/o"], "appears twice", ["o"]),
    ("schedule-folder", ["schedule", "check", "{d}/a_folder.yaml"], "is a folder", []),
    ("run-schedule-folder", ["run", "--schedule", "{d}/a_folder.yaml", "--out", "{d}/o"], "is a folder", ["o"]),
    ("run-schedule-fifo", ["run", "--schedule", "{d}/fifo.yaml", "--out", "{d}/o"], "FIFO", ["o"]),
    ("schedule-fifo", ["schedule", "check", "{d}/fifo.yaml"], "FIFO", []),
    ("run-schedule-device", ["run", "--schedule", "/dev/zero", "--out", "{d}/o"], "device", ["o"]),
    ("schedule-many-pruners", ["schedule", "check", "{d}/many_pruners.yaml"], "holds more than 100,000 values", []),
    ("schedule-evil-key", ["schedule", "check", "{d}/evil_key.yaml"], "unknown top-level key", []),
    # latency model files
    ("latency-simd-block-0", ["latency", "predict", "{d}/simd0.json", "--schedule", SCHEDULE20_56],
     "simd_block", []),
    ("latency-nan-field", ["latency", "predict", "{d}/nan.json", "--schedule", SCHEDULE20_56], "reference_ms", []),
    ("latency-negative-field", ["latency", "predict", "{d}/negative.json", "--schedule", SCHEDULE20_56],
     "reference_ms", []),
    ("latency-overflowing-field", ["latency", "predict", "{d}/overflow.json", "--schedule", SCHEDULE20_56],
     "coefficients", []),
    ("latency-other-network", ["latency", "predict", "{d}/lm56.json", "{d}/resnet20.onnx"], "resnet56_cifar", []),
    ("sweep-artifacts-ftp", ["sweep", str(SWEEP), "--redis", "redis://127.0.0.1:1/0", "--artifacts", "ftp://x",
                             "--out", "{d}/o"], "'ftp://x'", ["o"]),
    ("sweep-artifacts-device", ["sweep", str(SWEEP), "--redis", "redis://127.0.0.1:1/0", "--artifacts",
                                "file:///dev/full/x", "--out", "{d}/o"], "/dev/full is not a folder", ["o"]),
    ("bench-two-inputs", ["bench", "{d}/two_inputs.onnx", "--out", "{d}/o.json"], "2 inputs", ["o.json"]),
    # Found by this branch's own attack run (each was a traceback, a hang, or a banner first).
    ("run-out-in-proc", [*RUN20, "--out", "/proc/edgeprune-out"], "cannot create a folder", []),
    ("run-batch-size-huge", [*RUN20, "--batch-size", str(10**25), "--out", "{d}/o"], "--batch-size", ["o"]),
    ("run-subset-huge", [*RUN20, "--subset", str(10**25), "--out", "{d}/o"], "--subset", ["o"]),
    ("run-seed-negative", [*RUN20, "--seed", "-1", "--out", "{d}/o"], "--seed", ["o"]),
    ("run-threads-huge", [*RUN20, "--threads", str(10**25), "--out", "{d}/o"], "--threads", ["o"]),
    ("run-checkpoint-garbage", [*RUN20, "--checkpoint", "{d}/garbage.th", "--out", "{d}/o"],
     "cannot be read", ["o"]),
    ("run-data-missing", [*RUN20, "--data", "{d}/no-data", "--out", "{d}/o"], "no-data", ["o"]),
    ("run-models-dir-missing", [*RUN20, "--models-dir", "{d}/no-models", "--out", "{d}/o"],
     "no pretrained checkpoint", ["o"]),
    ("latency-predict-round-to", ["latency", "predict", "{d}/lm56.json", "--schedule", SCHEDULE20_56,
                                  "--set", "round_to=100000"], "round_to", []),
    ("bench-fifo", ["bench", "{d}/fifo.yaml"], "FIFO", []),
    ("bench-device", ["bench", "/dev/zero"], "a device", []),
    ("run-out-control-characters", [*RUN20, "--out", "{d}/o\x1b[31m"], "control characters", ["o\x1b[31m"]),
    ("sweep-checkpoint-missing", ["sweep", str(SWEEP), "--schedule", SCHEDULE20_56, "--checkpoint",
                                  "/nonexistent.th", "--out", "{d}/o"], "/nonexistent.th", ["o"]),
    ("sweep-latency-model-device", ["sweep", str(SWEEP), "--schedule", SCHEDULE20_56, "--latency-model",
                                    "/dev/zero", "--out", "{d}/o"], "a device", ["o"]),
    # Redis URLs (checked by the shared --redis option)
    ("queue-status-unix-socket", ["queue", "status", "--redis", "unix:///nonexistent.sock?password=secret"],
     "unix", []),
    ("queue-status-bad-db", ["queue", "status", "--redis", "redis://127.0.0.1:6379/abc"], "'abc'", []),
    # The agents' own flags: refused before any work or banner (no Redis is reached: port 1).
    ("producer-artifacts-ftp", ["producer", "--schedule", SCHEDULE, "--redis", "redis://127.0.0.1:1/0",
                                "--artifacts", "ftp://x", "--out", "{d}/o"], "'ftp://x'", ["o"]),
    ("producer-checkpoint-missing", ["producer", "--schedule", SCHEDULE, "--checkpoint", "/nonexistent.th",
                                     "--out", "{d}/o"], "/nonexistent.th", ["o"]),
    ("producer-artifact-limit-tiny", ["producer", "--schedule", SCHEDULE, "--max-artifact-mb", "0.001",
                                      "--out", "{d}/o"], "0.001", ["o"]),
    ("consumer-onnxruntime-npu", ["consumer", "--redis", "redis://127.0.0.1:1/0", "--backend", "onnxruntime",
                                 "--device", "NPU"], "'NPU'", []),
    ("consumer-artifacts-device", ["consumer", "--redis", "redis://127.0.0.1:1/0", "--artifacts",
                                   "file:///dev/full/x"], "/dev/full is not a folder", []),
    ("consumer-name-pattern", ["consumer", "--redis", "redis://127.0.0.1:1/0", "--name", "a:b*?\n"],
     "consumer name", []),
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
    assert proc.stderr.startswith(("Error:", "Usage:")), f"lines before the error: {proc.stderr}"
    assert not set(proc.stderr) & {"\x1b", "\r"}, "control characters echoed raw"
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


def test_latency_profile_without_consumer_says_what_it_waits_for_and_times_out(tmp_path, redis_url):
    """Issue 31: `latency profile --redis URL` with no consumer was silent and still blocked
    after 120 s. It now names the target, server and prefix it waits on, and gives up."""
    import uuid

    import redis

    prefix = f"test-i31-profile-{uuid.uuid4().hex[:8]}"
    try:
        proc = _run(["latency", "profile", "--model", "resnet20_cifar", "--fast", "--redis", redis_url,
                     "--prefix", prefix, "--archs", "2", "--job-timeout", "2",
                     "--out", str(tmp_path / "lm.json")], cwd=tmp_path)
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("waiting for a consumer of openvino/CPU/fp32") and prefix in lines[0]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and "no consumer of openvino/CPU/fp32" in errors[0] and "2 s" in errors[0]
    assert list(tmp_path.iterdir()) == []
