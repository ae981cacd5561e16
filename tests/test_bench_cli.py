"""``edgeprune bench``: a good run prints and writes figures; every bad input is one error line, exit 2."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from edgeprune.cli import main
from pipeline.export import export_onnx
from pipeline.models import create_model

FAST = ["--min-iters", "20", "--min-time", "0.05"]


class TinyNet(torch.nn.Module):
    """A classifier for 1x28x28 images: fits no CIFAR data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.head = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    resnet = export_onnx(create_model("resnet20_cifar"), folder / "resnet20.onnx").path
    tiny = export_onnx(TinyNet(), folder / "tiny.onnx", input_shape=(1, 1, 28, 28)).path
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(resnet.read_bytes()[: resnet.stat().st_size // 3])
    text = folder / "notes.onnx"
    text.write_text("this is not a model\n")
    return {"resnet": resnet, "tiny": tiny, "corrupt": corrupt, "text": text,
            "missing": folder / "missing.onnx"}


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def bench(capsys, monkeypatch):
    """Run ``edgeprune bench ARGS`` through the console entry point in this process."""

    def run(*args: str, settings=None) -> Outcome:
        data = ["--data", str(settings.data), "--cache-dir", str(settings.cache_dir)] if settings else []
        monkeypatch.setattr(sys, "argv", ["edgeprune", "bench", *args, *data])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def assert_one_error_line(result: Outcome, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert result.stdout == ""


def test_bench_prints_json_and_writes_out(bench, models, settings, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench(str(models["resnet"]), "--accuracy", "--limit", "200", "--baseline",
                   str(models["resnet"]), "--per-layer", "--json", "--out", str(out), *FAST,
                   "--quiet-window", "5", settings=settings)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text()) == printed
    model = printed["model"]
    assert model["Total_Latency"] > 0 and model["Latency"] > 0 and model["eval_count"] == 200
    assert model["latency"]["count"] >= 20 and model["per_layer"]
    stats = model["latency"]
    assert stats["window"] == 5 and stats["windows"] == stats["count"] // 5
    assert stats["min"] <= model["Total_Latency"] == stats["quiet_median"] <= stats["max"]
    assert printed["baseline"]["macs"] == model["macs"]
    # MODEL was also timed in alternation with the baseline: here the same file, so about 1.
    assert model["relative_reference"] == "resnet20.onnx" and model["relative_polls"] == 20
    assert 0.5 < model["Relative_Latency"] < 2.0
    assert "Relative_Latency" not in printed["baseline"]
    # Two compiles of one file may differ in which tiny nodes OpenVINO reports as executed, so
    # the comparison is the union of both profiles, each time on its own side.
    rows = {row["name"]: row for row in printed["per_layer_comparison"]}
    mine = {layer["name"]: layer["ms"] for layer in model["per_layer"]}
    theirs = {layer["name"]: layer["ms"] for layer in printed["baseline"]["per_layer"]}
    assert set(rows) == set(mine) | set(theirs)
    assert all(rows[name]["ms"] == ms for name, ms in mine.items())
    assert all(rows[name]["baseline_ms"] == ms for name, ms in theirs.items())


def test_bench_prints_a_table(bench, models) -> None:
    result = bench(str(models["resnet"]), "--backend", "onnxruntime", *FAST)
    assert result.returncode == 0, result.stderr
    for label in ("Latency ms (layer sum)", "Total_Latency ms (quiet median)", "median of all / 95% CI",
                  "Throughput img/s", "params / MACs", "onnxruntime"):
        assert label in result.stdout


def test_missing_file(bench, models, tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    assert_one_error_line(bench(str(models["missing"]), "--out", str(out)), "no such model file")
    assert not out.exists()


def test_corrupt_file(bench, models, tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    assert_one_error_line(bench(str(models["corrupt"]), "--out", str(out)), "not a valid ONNX")
    assert not out.exists()


def test_text_file_is_not_onnx(bench, models) -> None:
    assert_one_error_line(bench(str(models["text"])), "notes.onnx", "not a valid ONNX")


def test_input_shape_does_not_match_the_data(bench, models, settings, tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    result = bench(str(models["tiny"]), "--accuracy", "--limit", "50", "--out", str(out), *FAST,
                   settings=settings)
    assert_one_error_line(result, "(1, 28, 28)", "(3, 32, 32)")
    assert not out.exists()


def test_unknown_device(bench, models, tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    assert_one_error_line(bench(str(models["resnet"]), "--device", "TPU", "--out", str(out), *FAST),
                          "'TPU'", "CPU")
    assert not out.exists()


def test_unknown_device_for_onnxruntime(bench, models) -> None:
    assert_one_error_line(bench(str(models["resnet"]), "--backend", "onnxruntime", "--device",
                                "GPU"), "'GPU'")


def test_onnxruntime_refuses_other_precisions(bench, models) -> None:
    assert_one_error_line(bench(str(models["resnet"]), "--backend", "onnxruntime", "--precision",
                                "int8"), "fp32 only")


def test_out_that_is_not_a_regular_file_is_refused_before_measuring(bench, models, tmp_path: Path) -> None:
    import os
    import stat

    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    assert_one_error_line(bench(str(models["resnet"]), "--out", str(fifo), *FAST),
                          f"{fifo} is not a regular file; writing it would replace it")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and list(tmp_path.iterdir()) == [fifo]


def test_bench_baseline_by_model_name(bench, models, settings) -> None:
    """`--baseline resnet20_cifar` exports (and caches) the unpruned network and compares with it."""
    result = bench(str(models["resnet"]), "--baseline", "resnet20_cifar", *FAST, settings=settings)
    assert result.returncode == 0, result.stderr
    assert (settings.cache_dir / "references" / "unpruned-resnet20_cifar-A-10.onnx").is_file()
    lines = result.stdout.splitlines()
    assert "unpruned resnet20_cifar" in lines[0]
    assert "speed-up of model over baseline (>1: model faster or smaller)" in lines[0]
    # The same network on both sides, timed in alternation: about 1 even on a busy machine
    # (the absolute figures, timed one after the other, may differ by several times there).
    relative = next(line for line in lines if line.startswith("Relative_Latency"))
    assert 0.5 < float(relative.rsplit(None, 1)[-1].rstrip("x")) < 2.0, result.stdout
    assert "machine slowdown" in result.stdout and "reference kernel" in result.stdout


def _metrics(ms: float, throughput: float, macs: int, relative: float | None = None) -> dict:
    stats = {k: ms for k in ("median", "ci95_low", "ci95_high", "mean", "p90", "p99", "min", "max")}
    metrics = {"backend": "openvino", "openvino_version": "x", "device": "CPU", "device_name": "cpu",
               "precision": "fp32", "inference_precision": "f32", "threads": 2, "streams": 1,
               "batch_size": 1, "Latency": ms, "Total_Latency": ms, "latency": {**stats, "std": 0.0, "count": 9},
               "machine_slowdown": 1.0, "quiet_wait_s": 0.0, "Throughput": throughput,
               "onnx_bytes": 1, "ir_bytes": 1, "params": macs, "macs": macs}
    if relative is not None:
        metrics.update(Relative_Latency=relative, relative_spread=0.01, relative_polls=4)
    return metrics


def test_bench_ratios_all_read_model_over_baseline() -> None:
    """A model twice as fast, with twice the throughput and half the MACs: every ratio is 2.00x
    (before, Throughput read 0.5x: baseline / model, the other way round)."""
    from edgeprune.commands.bench import format_table

    text = format_table([("model", _metrics(1.0, 200.0, 50, relative=0.5)),
                         ("base", _metrics(2.0, 100.0, 100))])
    ratios = [line.rsplit(None, 1)[-1] for line in text.splitlines()
              if line.startswith(("Latency ms", "Total_Latency ms", "Throughput", "params", "Relative"))]
    assert ratios == ["2.000x"] * 5, text


def test_bench_baseline_that_is_neither_a_file_nor_a_model_name(bench, models) -> None:
    assert_one_error_line(bench(str(models["resnet"]), "--baseline", "resnet99_cifar", *FAST),
                          "resnet99_cifar", "resnet56_cifar")


def test_bench_slowdown_cell_is_bounded_and_explained() -> None:
    from edgeprune.commands.bench import slowdown_cell

    assert slowdown_cell(1.234) == "1.23x"
    wild = slowdown_cell(581.99)
    assert "581" not in wild and wild.startswith(">10x") and "not the machine" in wild
