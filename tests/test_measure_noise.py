"""A measurement that is noise says so: the rule on its own spread, re-timing, and the record."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import io

import optuna

from edgeprune.commands.bench import format_table
from pipeline.export import export_onnx
from pipeline.measure import MeasureOptions, measure
from pipeline.measure.noise import TAIL_LIMIT, flag_cell, measurement_flag, unranked_figures
from pipeline.measure.stats import summarize
from pipeline.messages import Target
from pipeline.models import create_model
from pipeline.search.config import load_sweep
from pipeline.search.engine import SweepRunner, TrialOutcome, best_trials, open_study
from pipeline.search.progress import ProgressTable
from pipeline.search.storage import open_storage

RNG = np.random.default_rng(0)


def _quiet(n: int = 1000, ms: float = 1.0) -> np.ndarray:
    return ms * (1 + np.abs(RNG.normal(0, 0.03, n)))


def test_a_quiet_timing_series_is_steady():
    stats = summarize(_quiet(), window=100)
    assert measurement_flag(stats, layer_latency_ms=0.9 * stats.quiet_median) is None


def test_a_busy_tail_is_flagged_by_p90_over_the_quiet_median():
    # The busy machine's pattern: quiet windows between bursts where requests take 4.5x longer.
    times = _quiet()
    times[np.arange(times.size) % 300 >= 200] *= 4.5
    stats = summarize(times, window=100)
    flag = measurement_flag(stats)
    assert flag is not None and "x the quiet median" in flag and f"limit {TAIL_LIMIT:g}x" in flag
    # The same slowdown over fewer requests stays under the limit (p90 is still a quiet request).
    times = _quiet()
    times[:50] *= 4.5
    assert measurement_flag(summarize(times, window=100)) is None


def test_layer_sum_above_the_request_time_is_flagged_on_openvino_only():
    stats = summarize(_quiet(), window=100)
    flag = measurement_flag(stats, layer_latency_ms=1.5 * stats.quiet_median)
    assert flag is not None and "Latency (sum of layers)" in flag
    # ONNX Runtime's profiler slows the kernels it times, so its sum exceeds Total_Latency anyway.
    assert measurement_flag(stats, 1.5 * stats.quiet_median, backend="onnxruntime") is None


def test_relative_spread_above_a_tenth_is_flagged():
    stats = summarize(_quiet(), window=100)
    assert measurement_flag(stats, relative_spread=0.05) is None
    assert "relative_spread 0.15" in measurement_flag(stats, relative_spread=0.15)


def test_flag_cell_and_unranked_figures():
    assert flag_cell({"Top1": 50.0}) == "-"
    assert flag_cell({"measurement_flag": None, "measure_attempts": 1}) == "steady"
    assert flag_cell({"measurement_flag": "noisy: x", "measure_attempts": 3}) == "noisy (3x)"
    noisy = {"measurement_flag": "noisy: x", "measure_attempts": 1, "Total_Latency": 1.0, "Top1": 50.0}
    assert unranked_figures(noisy, ["Total_Latency", "Top1"]) == ["Total_Latency"]
    assert unranked_figures({**noisy, "measurement_flag": None}, ["Total_Latency"]) == []
    assert unranked_figures({**noisy, "measure_attempts": 3}, ["Total_Latency"]) == []  # re-timed


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("noise") / "resnet20.onnx"
    export_onnx(create_model("resnet20_cifar").eval(), path)
    return path


def test_a_flagged_real_measurement_is_timed_again_and_shows_its_flag(resnet20_onnx):
    # A machine cannot be made reliably noisy on purpose (busy loops tripped the rule in some runs
    # and not in others), so the rule is made strict instead: p90 always exceeds the quiet median
    # (the lowest window's median), so every real timing is flagged and re-timed.
    result = measure(resnet20_onnx, Target(), options=MeasureOptions(
        warmup=20, min_iters=400, min_time_s=0.5, quiet_window=50, throughput=False,
        profile_repeats=20, remeasure=1, tail_limit=1.0))
    metrics = result.to_metrics()
    assert metrics["measurement_flag"].startswith("noisy: ") and "limit 1x" in metrics["measurement_flag"]
    assert metrics["measure_attempts"] == 2  # flagged, so timed again; still noisy, so still flagged
    table = format_table([("resnet20.onnx", metrics)])
    assert re.search(r"timing \(noise rule\) +noisy \(2x\)", table)
    assert re.search(r"why noisy +p90", table)
    steady = measure(resnet20_onnx, Target(), options=MeasureOptions(
        warmup=20, min_iters=400, min_time_s=0.5, quiet_window=50, throughput=False,
        profile_repeats=20, remeasure=1, tail_limit=1e9)).to_metrics()
    # At this limit the p90 rule cannot trip; the engine's own check (sum of layers above the total)
    # still may, and then a second timing is taken and the unflagged one kept.
    assert steady["measurement_flag"] is None or "Latency (sum of layers)" in steady["measurement_flag"]
    assert "p90" not in (steady["measurement_flag"] or "")


def test_the_search_never_ranks_on_a_flagged_figure_not_timed_again(tmp_path):
    config = load_sweep({"method": "grid", "metric": {"name": "Total_Latency"},
                         "parameters": {"a": {"values": [1, 2, 3]}}})
    study = open_study(config, open_storage(tmp_path), "noise", seed=0)
    figures = {1: (2.0, None, 1), 2: (0.5, "noisy: p90 ...", 1), 3: (1.0, "noisy: p90 ...", 3)}

    def trial(context):
        latency, flag, attempts = figures[context.params["a"]]
        return TrialOutcome("ok", {"Total_Latency": latency, "measurement_flag": flag,
                                   "measure_attempts": attempts})

    out = io.StringIO()
    records = SweepRunner(config, study, trial, tmp_path, n_trials=3,
                          on_record=ProgressTable(config, out)).run()
    by_a = {r.params["a"]: r for r in records}
    states = {t.params["a"]: t.state for t in study.trials}
    # The fastest figure was noise and never timed again: recorded, told without a value, not best.
    assert states[2] == optuna.trial.TrialState.PRUNED and "not ranked: Total_Latency" in by_a[2].reason
    # Still noisy after re-timing: the steadiest there is, ranked, with its flag kept.
    assert states[3] == optuna.trial.TrialState.COMPLETE and by_a[3].metrics["measurement_flag"]
    assert [r.params["a"] for r in best_trials(config, records)] == [3]
    assert "noisy (3x)" in out.getvalue() and " steady " in out.getvalue()
