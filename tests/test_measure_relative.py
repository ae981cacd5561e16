"""``Relative_Latency``: a model timed in alternation with a reference, on scripted and real engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import BenchmarkError
from pipeline.export import export_onnx
from pipeline.measure import MeasureOptions, measure
from pipeline.measure.relative import relative_latency
from pipeline.messages import ArtifactRef, Job, Target
from pipeline.models import create_model


class ScriptedMachine:
    """Two models on a machine whose speed changes over time: each window reads ms x slowdown."""

    def __init__(self, model_ms: float, reference_ms: float, slowdowns: list[float]):
        self.ms = {"model": model_ms, "reference": reference_ms}
        self.slowdowns = iter(slowdowns)
        self.now = 1.0
        self.calls: list[str] = []

    def window(self, name: str):
        def run() -> np.ndarray:
            if len(self.calls) % 2 == 0:  # the machine changes speed between polls
                self.now = next(self.slowdowns)
            self.calls.append(name)
            return np.full(5, self.ms[name] * self.now)
        return run


def test_slow_periods_cancel_out_of_the_ratio() -> None:
    machine = ScriptedMachine(0.6, 1.2, [1.0, 1.6, 1.6, 1.0, 2.0, 1.0])
    result = relative_latency(machine.window("model"), machine.window("reference"), 6, "base.onnx")
    assert result.ratio == pytest.approx(0.5) and result.spread == pytest.approx(0.0)
    assert result.reference_ms == pytest.approx(1.2) and result.polls == 6
    # Neither model always runs second (right after the other one warmed the caches).
    assert machine.calls[:4] == ["model", "reference", "reference", "model"]
    assert result.to_metrics()["Relative_Latency"] == pytest.approx(0.5)


def test_polls_must_be_positive() -> None:
    machine = ScriptedMachine(1.0, 1.0, [1.0])
    with pytest.raises(ValueError, match="polls"):
        relative_latency(machine.window("model"), machine.window("reference"), 0, "base.onnx")


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("relative")
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 10)).eval()
    gray = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    return {"resnet20": export_onnx(create_model("resnet20_cifar").eval(), folder / "resnet20.onnx",
                                    atol=1.0).path,
            "small": export_onnx(small, folder / "small.onnx").path,
            "gray": export_onnx(gray, folder / "gray.onnx", input_shape=(1, 1, 28, 28)).path}


def options_against(reference: Path) -> MeasureOptions:
    return MeasureOptions.fast(throughput=False, reference_onnx=str(reference), relative_polls=8,
                               relative_window=20)


def test_real_engines_rank_a_small_model_below_its_reference(onnx_models) -> None:
    small = measure(onnx_models["small"], Target(), options=options_against(onnx_models["resnet20"]))
    same = measure(onnx_models["resnet20"], Target(), options=options_against(onnx_models["resnet20"]))
    small_ratio, same_ratio = small.relative.ratio, same.relative.ratio
    # One conv layer against twenty: far below the reference; the reference against itself: ~1.
    assert 0 < small_ratio < 0.5 * same_ratio
    assert 0.5 < same_ratio < 2.0
    metrics = small.to_metrics()
    assert metrics["relative_reference"] == "resnet20.onnx" and metrics["relative_polls"] == 8
    assert metrics["relative_reference_ms"] > 0 and metrics["relative_spread"] >= 0


def test_no_reference_no_relative_figure(onnx_models) -> None:
    metrics = measure(onnx_models["small"], Target(), options=MeasureOptions.fast(throughput=False)
                      ).to_metrics()
    assert "Relative_Latency" not in metrics


def test_a_reference_of_another_input_size_is_refused(onnx_models) -> None:
    with pytest.raises(BenchmarkError, match="same input size"):
        measure(onnx_models["small"], Target(), options=options_against(onnx_models["gray"]))


def test_a_missing_reference_is_refused(onnx_models, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no such model file"):
        measure(onnx_models["small"], Target(), options=options_against(tmp_path / "gone.onnx"))


def _job(reference_model: str, eval_split: str = "") -> Job:
    return Job(job_id="a" * 32, run_id="r", artifact=ArtifactRef(uri="", sha256="", size=0),
               eval_split=eval_split, reference_model=reference_model)


def test_consumer_times_a_job_against_the_unpruned_network_it_names(onnx_models, settings) -> None:
    """A sweep's job names its base network; the consumer builds that unpruned network's ONNX
    once (cached by name) and times the job's model in alternation with it."""
    from pipeline.flow import consume

    options = MeasureOptions.fast(throughput=False, relative_polls=4, relative_window=10)
    result = consume(_job("resnet20_cifar"), onnx_models["small"], settings, options)
    assert result.ok, result.error
    assert 0 < result.metrics["Relative_Latency"] < 1
    assert result.metrics["relative_reference"] == "unpruned-resnet20_cifar-A-10.onnx"
    assert result.metrics["relative_reference_model"] == "resnet20_cifar"
    cached = settings.cache_dir / "references" / "unpruned-resnet20_cifar-A-10.onnx"
    stamp = cached.stat().st_mtime_ns
    again = consume(_job("resnet20_cifar"), onnx_models["small"], settings, options)
    assert again.ok and cached.stat().st_mtime_ns == stamp  # built once


@pytest.mark.parametrize("name", ["../../etc/passwd", "resnet21_cifar", "x" * 500])
def test_a_job_naming_an_unknown_reference_network_fails_with_its_reason(onnx_models, settings,
                                                                         name) -> None:
    from pipeline.flow import consume

    result = consume(_job(name), onnx_models["small"], settings, MeasureOptions.fast(throughput=False))
    assert not result.ok and "reference network" in result.error and "resnet20_cifar" in result.error
    assert not list((settings.cache_dir / "references").glob("*etc*"))


def test_reference_network_without_a_pretrained_checkpoint_is_built_untrained(tmp_path, settings) -> None:
    """Option-B shortcuts or another class count: no shared checkpoint, the reference is still
    built (seeded weights: only its timing is read), so such a sweep's trials are not failed."""
    import dataclasses

    from pipeline.flow import unpruned_onnx
    from pipeline.measure import onnx_facts

    local = dataclasses.replace(settings, cache_dir=tmp_path)
    path = unpruned_onnx("resnet20_cifar", "B", 3, local)
    assert path.name == "unpruned-resnet20_cifar-B-3.onnx" and onnx_facts(path).num_outputs == 3
