"""What a person sees: stage lines as each stage ends, `edgeprune run`'s comparison with the
unpruned model and its retraining hint, the sweep table fitted to a terminal width, the consumer's
job line. Real ResNet20, mini data, real ONNX export and OpenVINO measurement."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import cli
from edgeprune.commands.consumer import job_line
from pipeline.flow import RunConfig, job_for, produce
from pipeline.messages import Result, TrialRecord
from pipeline.progress import STAGE_WORDS, StageLines, format_duration, format_metric
from pipeline.reference import unpruned_reference
from pipeline.search.config import load_sweep
from pipeline.search.progress import ProgressTable, abbreviate, best_line, short_names

REPO = Path(__file__).resolve().parent.parent
SCHEDULE = REPO / "schedules" / "resnet20_filter_rank.yaml"
SWEEPS = REPO / "sweeps"


def test_stage_lines_come_as_each_stage_ends_with_epochs_and_gate(tmp_path: Path, settings) -> None:
    stream = io.StringIO()
    lines = StageLines(stream=stream, prefix="trial 4: ", epochs=1)
    seen: list[str] = []

    def gate(path: Path, facts) -> None:
        seen.append(stream.getvalue())  # what was printed before the gate ran
        return None

    config = RunConfig(schedule=SCHEDULE, model="resnet20_cifar", epochs=1, max_steps_per_epoch=2,
                       batch_size=32, overrides=["filter_pruner_50.desired_sparsity=0.25"])
    produced = produce(config, settings, tmp_path, gate=lines.gate(gate),
                       on_epoch=lines.on_epoch(), on_stage=lines.stage)
    printed = stream.getvalue().splitlines()
    assert all(line.startswith("trial 4: ") for line in printed)
    words = [line.removeprefix("trial 4: ") for line in printed]
    # One line per timed stage, in the order produce ran them, each with its seconds.
    stage_lines = [w for w in words if w.endswith(" s") and not w.startswith(("retraining", "gated"))]
    assert [w.rsplit(None, 2)[0].strip() for w in stage_lines] == \
        [STAGE_WORDS[name] for name in produced.stage_seconds]
    assert "pruned" in stage_lines[3] and "latency gate passed: retraining" in words
    # The pruning lines were out before the gate ran: they are live, not printed at the end.
    assert "pruned" in seen[0] and "exported" not in seen[0]
    epoch = next(w for w in words if w.startswith("retraining epoch"))
    assert epoch.startswith("retraining epoch 1/1: val Top1 ") and epoch.endswith("%")
    assert words.index(epoch) < next(i for i, w in enumerate(words) if w.startswith("retrained"))


def test_run_shows_speedup_over_unpruned_and_a_retraining_hint(tmp_path: Path, settings) -> None:
    out = tmp_path / "run"
    common = ["--shared", str(settings.shared_dir), "--data", str(settings.data),
              "--cache-dir", str(settings.cache_dir), "--torch-device", "cpu"]
    result = CliRunner().invoke(cli, ["run", "--model", "resnet20_cifar", "--schedule", str(SCHEDULE),
                                      "--set", "filter_pruner_50.desired_sparsity=0.7", "--epochs", "0",
                                      "--out", str(out), *common], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    metrics = record["metrics"]
    # Timed in the same run, in alternation with the cached unpruned reference.
    assert metrics["relative_reference"].startswith("resnet20_cifar-")
    assert record["speedup_vs_unpruned"] == pytest.approx(1 / metrics["Relative_Latency"], rel=1e-3)
    assert record["unpruned"]["eval_count"] == metrics["eval_count"]
    assert 0 < record["unpruned"]["Top1_torch"] <= 100
    # 70% of the first stage's filters gone, no retraining: far below the unpruned Top1.
    hint = record["retrain_hint"]
    assert hint["top1_drop"] == pytest.approx(record["unpruned"]["Top1_torch"] - metrics["Top1"], abs=0.01)
    assert hint["top1_drop"] > hint["threshold"] and hint["epoch_seconds"] > 0
    assert hint["steps_per_epoch"] > 0 and hint["step_seconds"] > 0
    stdout, stderr = result.stdout, result.stderr
    assert f"{record['speedup_vs_unpruned']:.2f}x faster" in stdout
    assert "unpruned Top1 (PyTorch, same" in stdout
    # run skips the validation pass before adaptive BN unless --raw-eval.
    assert "Top1_before_raw" not in metrics and "stage_seconds" in record
    assert "evaluate_pruned" not in record["stage_seconds"]
    assert f"(adaptive BN on {metrics['bn_recalibrate']} train images)" in stdout
    assert f"retrain: --epochs 1 takes about {format_duration(hint['epoch_seconds'])}" in stdout
    for word in ("unpruned reference ready", "pruned", "exported", "measured", "retraining time estimated"):
        assert any(line.strip().startswith(word) for line in stderr.splitlines()), (word, stderr)
    # The estimate says, before it runs, that it runs and why (only then: the hint is printed).
    said = next(line for line in stderr.splitlines() if "estimating how long one retraining epoch" in line)
    assert f"Top1 fell {hint['top1_drop']:.1f} points below the unpruned model's" in said
    assert stderr.index(said) < stderr.index("retraining time estimated")


def test_unpruned_reference_is_made_once_then_read_from_the_cache(settings, capsys) -> None:
    config = RunConfig(schedule=SCHEDULE, model="resnet20_cifar", eval_subset=100)
    first = unpruned_reference(config, settings)
    # Said while it is made (this test alone evaluates 100 images), and why; not when read back.
    said = capsys.readouterr().err
    assert "building the unpruned resnet20_cifar's reference once" in said
    assert "Top1 on up to 100 test images" in said and "timed beside the unpruned one" in said
    written = first.onnx_path.stat().st_mtime_ns
    again = unpruned_reference(config, settings)
    assert again == first and again.onnx_path.stat().st_mtime_ns == written
    assert capsys.readouterr().err == ""
    assert first.eval_count == 100 and 0 < first.top1 <= 100


def _record(number: int, params: dict, **metrics) -> TrialRecord:
    return TrialRecord(number=number, status="ok", params=params, metrics=dict(metrics, measure_attempts=1),
                       started_at=1000.0, finished_at=1000.0 + 60 * (number + 1),
                       compute_s=50.0 * (number + 1))


@pytest.mark.parametrize("sweep", ["01_rapid_latency.yaml", "05_pareto_latency_top1.yaml"])
@pytest.mark.parametrize("width", [80, 100, 160])
def test_sweep_table_fits_the_width_with_a_legend(sweep: str, width: int) -> None:
    config = load_sweep(SWEEPS / sweep)
    stream = io.StringIO()
    table = ProgressTable(config, stream, width=width)
    params = {p: 0.55 for p in config.searched}
    table(_record(0, params, Latency=1.5419999999999998, Total_Latency=1.3, Top1=71.2345,
                  Relative_Latency=0.41234))
    table(_record(1, params, Latency=1.2, Total_Latency=1.1, Top1=60.0, Relative_Latency=0.35))
    lines = stream.getvalue().splitlines()
    header, rows = lines[0], [line for line in lines if line.split()[:1] in (["0"], ["1"])]
    assert len(rows) == 2
    assert all(len(line) <= width for line in [header, *rows] + [l for l in lines if "=" in l])
    assert header.split()[:2] == ["trial", "status"] and "Top1" in header
    assert header.split()[-4:] == ["wall", "s", "comp", "s"]
    # Every shortened name is spelled out in the legend.
    legend = " ".join(" ".join(lines[1:lines.index(rows[0])]).split())
    for name, short in table.shown.items():
        assert short == name or f"{short} = {name}" in legend
    # Metrics rounded for reading, Top1 beside the latency; wall and compute seconds apart.
    latency = {"Latency": "1.54 ms", "Total_Latency": "1.3 ms",
               "Relative_Latency": "0.412"}[config.objectives[0].name]
    assert latency in rows[0] and "71.2%" in rows[0] and "1.5419999" not in stream.getvalue()
    assert rows[0].split()[-2:] == ["60.0", "50.0"]


def test_short_names_and_best_line() -> None:
    names = ["filter_pruner_70_desired_sparsity", "filter_pruner_60_desired_sparsity"]
    assert short_names(names, room=200) == {n: n for n in names}
    assert short_names(names, room=20) == {names[0]: "fp70", names[1]: "fp60"}
    assert abbreviate("filter_pruner_70_desired_sparsity") == "fp70_ds"
    config = load_sweep(SWEEPS / "01_rapid_latency.yaml")
    records = [_record(0, {}, Latency=1.5419999999999998, Top1=71.23), _record(1, {}, Latency=2.0, Top1=80.0)]
    line = best_line(config, records)
    objective = config.objectives[0]
    assert line.startswith(f"best so far ({objective.goal} {objective.name}): trial 0")
    assert "Latency 1.54 ms" in line and "Top1 71.2%" in line
    assert format_metric("Top1", 71.26) == "71.3%" and format_metric("Total_Latency", 0.98765) == "0.988 ms"


def test_consumer_job_line_names_job_model_precision_latency_and_seconds(tmp_path: Path, settings) -> None:
    config = RunConfig(schedule=SCHEDULE, model="resnet20_cifar")
    produced = produce(config, settings, tmp_path)
    job = job_for(produced)
    result = Result(job_id=job.job_id, run_id=job.run_id, status="ok", target=job.target,
                    metrics={"Total_Latency": 0.4321, "Latency": 0.3, "Top1": 55.54, "precision": "fp32"},
                    started_at=100.0, finished_at=102.5)
    line = job_line(job, result)
    assert line.startswith(f"job {job.job_id[:12]} (")
    assert f"{produced.facts.params:,} params" in line and " fp32: " in line
    assert "Total_Latency 0.432 ms" in line and "Top1 55.5%" in line and line.endswith("in 2.5 s")
    failed = Result(job_id=job.job_id, run_id=job.run_id, status="failed", target=job.target,
                    error="bad model", started_at=100.0, finished_at=101.0)
    assert job_line(job, failed).endswith("failed after 1.0 s: bad model")
