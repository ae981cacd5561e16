"""A report that cannot contradict itself (issue 36 items 1-2): the headline's speed-up is the
trial's own alternating ratio, references take part in the Pareto front, the per-layer section is
the headline model's, a noisy figure carries its flag, and names are never cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.messages import TrialRecord
from pipeline.report import BaselinePoint, Headline, analyse, build_report

FLAG = "p90 is 1.6x the quiet median: a neighbour was busy"
LONG_LAYER = "layer3.8.conv2/WithoutBiases/abcd_acdb_/conv1/Conv/WithoutBiases_very_long_name"


def _profile(scale: float) -> list[dict]:
    return [{"name": LONG_LAYER, "ms": 0.5 * scale}, {"name": "linear/Gemm", "ms": 0.1 * scale}]


def _trial(number: int, latency: float, top1: float, relative: float | None, **extra) -> TrialRecord:
    metrics = {"Total_Latency": latency, "Top1": top1, "model": "resnet20_cifar",
               "per_layer": _profile(number + 1), **extra}
    if relative is not None:
        metrics.update(Relative_Latency=relative, relative_reference="resnet56_cifar.onnx")
    return TrialRecord(number=number, status="ok", params={"s": 0.1 * number}, metrics=metrics,
                       finished_at=1.7e9 + number)


def _unpruned() -> BaselinePoint:
    # Measured under load: its absolute ms divided by a trial's quiet ms would be off by 3x.
    return BaselinePoint("unpruned resnet56_cifar", {"Total_Latency": 9.40, "Top1": 83.0,
                                                     "Relative_Latency": 1.0,
                                                     "per_layer": _profile(10)})


def test_headline_speedup_is_one_over_the_trials_relative_latency():
    trials = [_trial(0, 4.0, 70.0, 0.8), _trial(1, 0.97, 80.0, 0.345, measurement_flag=FLAG)]
    report = analyse(trials, [_unpruned()], headline=Headline("maximize Top1", [1], ["Top1"]))
    [chosen] = report["headline"]["trials"]
    assert chosen["number"] == 1
    assert chosen["speedup"] == pytest.approx(1 / 0.345, rel=1e-3)
    assert FLAG in chosen["flag"]
    assert "Relative_Latency" in chosen["speedup_basis"]
    points = {p["number"]: p for p in report["pareto"]["points"]}
    assert points[1]["speedup"] == pytest.approx(1 / 0.345, rel=1e-3)


def test_a_trial_without_relative_latency_has_no_speedup_from_absolute_ms():
    """Absolute ms taken at different moments are no speed-up: none is claimed from them."""
    report = analyse([_trial(0, 0.97, 80.0, None)], [_unpruned()])
    [chosen] = report["headline"]["trials"]
    assert chosen["speedup"] is None and "Relative_Latency" in chosen["speedup_basis"]


def test_a_trial_dominated_by_a_reference_is_off_the_front():
    trials = [_trial(0, 4.0, 70.0, 0.40), _trial(1, 3.5, 74.0, 0.37), _trial(2, 2.0, 60.0, 0.2),
              _trial(3, 5.0, 80.0, 0.5)]
    hand = BaselinePoint("hand-picked", {"Total_Latency": 3.30, "Top1": 75.0,
                                         "Relative_Latency": 0.35})
    report = analyse(trials, [_unpruned(), hand], latency_metric="Relative_Latency")
    assert report["pareto"]["front"] == [2, 3]
    assert report["pareto"]["references_on_front"] == ["hand-picked", "unpruned resnet56_cifar"]


def test_per_layer_section_is_the_headline_models(tmp_path: Path):
    trials = [_trial(0, 4.0, 85.0, 0.8), _trial(3, 1.0, 70.0, 0.3)]
    report = analyse(trials, [_unpruned()], headline=Headline("minimize Relative_Latency", [3],
                                                              ["Relative_Latency"]))
    assert report["per_layer"]["model"] == 3


def test_page_shows_flags_and_full_names(tmp_path: Path):
    trials = [_trial(0, 4.0, 70.0, 0.8), _trial(1, 0.97, 80.0, 0.345, measurement_flag=FLAG)]
    trials[1].metrics["model"] = "resnet56_cifar_with_a_long_base_name"
    paths = build_report(trials, tmp_path / "r", baselines=[_unpruned()],
                         headline=Headline("maximize Top1", [1], ["Top1"]))
    page = paths.html.read_text()
    assert FLAG in page
    assert LONG_LAYER in page and "resnet56_cifar_with_a_long_base_name" in page
    assert f"{1 / 0.345:.2f}" in page
    report = json.loads(paths.json.read_text())
    assert report["per_layer"]["model"] == 1


def test_wandb_logs_the_speedup_as_one_over_relative_latency():
    from pipeline.search.tracking import SPEEDUP, _loggable

    logged = _loggable({"Relative_Latency": 0.345, "Total_Latency": 0.97})
    assert logged[SPEEDUP] == pytest.approx(1 / 0.345, rel=1e-3)
    assert SPEEDUP not in _loggable({"Total_Latency": 0.97})
