"""OpenVINO and ONNX Runtime measurements of a real ResNet20 on the mini data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data import load_data, to_tensor_batch
from pipeline.export import export_onnx
from pipeline.measure import MeasureOptions, compare_profiles, format_comparison, measure, onnx_facts
from pipeline.measure.accuracy import topk_correct
from pipeline.messages import Target
from pipeline.models import count_macs_params, create_model, load_checkpoint

#: ``Latency`` (sum of per-layer mean times) against the wall times of the same profiled
#: inferences. Upper bound: the layers leave out the gaps between layers and the request's own
#: overhead, so their sum may not exceed the mean wall time by more than the counters' resolution
#: (whole microseconds per layer, averaged: 1 us x (warm-up + repeats) / repeats per layer).
#: Lower bound: at least half of the FASTEST profiled inference's wall time (ResNet20 at batch 1
#: measures ~75-90% on a quiet machine; the rest is the Python call and input copy). The fastest,
#: not the mean, because on a loaded machine waiting to be scheduled between layers inflates the
#: wall time but no layer counter.
LAYER_SUM_MIN_SHARE = 0.5


@pytest.fixture(scope="module")
def resnet20(checkpoint_resnet20) -> torch.nn.Module:
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    return model.eval()


@pytest.fixture(scope="module")
def test_split(settings) -> tuple[np.ndarray, np.ndarray]:
    data = load_data(settings.data_path, settings.cache_dir)
    return to_tensor_batch(data.test.images), data.test.labels


@pytest.fixture(scope="module")
def train_images(settings) -> np.ndarray:
    return to_tensor_batch(load_data(settings.data_path, settings.cache_dir).train.images[:300])


@pytest.fixture(scope="module")
def onnx_path(resnet20, tmp_path_factory) -> Path:
    return export_onnx(resnet20, tmp_path_factory.mktemp("onnx") / "resnet20.onnx").path


@pytest.fixture(scope="module")
def torch_top1(resnet20, test_split) -> float:
    images, labels = test_split
    with torch.no_grad():
        logits = resnet20(torch.from_numpy(images)).numpy()
    return 100.0 * topk_correct(logits, labels, 1) / len(labels)


@pytest.fixture(scope="module")
def fp32(onnx_path, test_split, torch_top1):
    images, labels = test_split
    options = MeasureOptions.fast(profile_layers=True, torch_top1=torch_top1)
    return measure(onnx_path, Target(precision="fp32"), images, labels, options)


def test_fp32_deployed_top1_equals_pytorch(fp32, torch_top1) -> None:
    metrics = fp32.to_metrics()
    assert metrics["eval_count"] == 1000
    assert abs(metrics["Top1"] - torch_top1) <= 0.5
    assert metrics["Top1"] <= metrics["Top5"] <= 100
    assert "accuracy_flag" not in metrics


def test_metrics_carry_the_contract_names(fp32, resnet20, onnx_path) -> None:
    metrics = fp32.to_metrics()
    for key in ("Latency", "Total_Latency", "Throughput", "Top1", "Top5", "precision",
                "device_name", "openvino_version", "latency", "onnx_bytes", "ir_bytes", "params",
                "macs", "per_layer"):
        assert key in metrics, key
    stats = metrics["latency"]
    assert stats["count"] >= 30 and metrics["Total_Latency"] == stats["quiet_median"]
    assert stats["min"] <= stats["ci95_low"] <= stats["median"] <= stats["ci95_high"] <= stats["max"]
    assert metrics["precision"] == metrics["inference_precision"] == "fp32"
    assert metrics["runtime_precisions"].get("f32", 0) > 0 and "bf16" not in metrics["runtime_precisions"]
    assert metrics["streams"] == 1 and metrics["batch_size"] == 1 and metrics["Throughput"] > 0
    macs, _ = count_macs_params(resnet20)
    assert metrics["macs"] == macs  # from the ONNX graph, equal to counting the PyTorch model
    assert metrics["onnx_bytes"] == onnx_path.stat().st_size and metrics["ir_bytes"] > 0
    # Timing did not wait (quiet_wait_s 0) but recorded how slow the machine was when it began.
    assert metrics["machine_slowdown"] >= 1.0 and metrics["quiet_wait_s"] == 0.0


def test_layer_sum_is_within_the_single_inference_time(fp32) -> None:
    profile = fp32.profile
    assert profile.inferences == len(profile.wall_ms) == 10
    warmup = 5  # MeasureOptions.fast()
    resolution = 0.001 * len(profile.layers) * (warmup + profile.inferences) / profile.inferences
    assert fp32.layer_latency_ms <= profile.wall_mean_ms + resolution
    assert fp32.layer_latency_ms >= LAYER_SUM_MIN_SHARE * min(profile.wall_ms)
    assert fp32.to_metrics()["profiled_wall_ms"] == profile.wall_mean_ms
    convs = [layer for layer in profile.layers if layer.layer_type == "Convolution"]
    assert len(convs) == 19 and all(layer.exec_type for layer in convs)  # ResNet20: 19 convs
    assert all(layer.ms >= 0 for layer in profile.layers)


def test_int8_quantizes_and_records_accuracy(onnx_path, test_split, train_images, fp32, capsys) -> None:
    images, labels = test_split
    options = MeasureOptions.fast(throughput=False, calibration_images=train_images)
    int8 = measure(onnx_path, Target(precision="int8"), images, labels, options).to_metrics()
    # NNCF's progress bars go to stderr: stdout stays the one JSON object of a --json command.
    printed = capsys.readouterr()
    assert "Statistics collection" not in printed.out and "Statistics collection" in printed.err
    assert int8["precision"] == "int8"
    assert int8["runtime_precisions"].get("u8", 0) + int8["runtime_precisions"].get("i8", 0) > 0
    assert 0 <= int8["Top1"] <= 100 and int8["eval_count"] == 1000
    # Post-training INT8 of a well-calibrated ResNet stays near fp32; a broken one falls to chance.
    assert int8["Top1"] > fp32.to_metrics()["Top1"] - 10
    assert int8["ir_bytes"] < fp32.to_metrics()["ir_bytes"]  # int8 weights


def test_onnxruntime_agrees_with_openvino(onnx_path, test_split, fp32) -> None:
    images, labels = test_split
    ort_metrics = measure(onnx_path, Target(backend="onnxruntime"), images, labels,
                          MeasureOptions.fast()).to_metrics()
    assert abs(ort_metrics["Top1"] - fp32.to_metrics()["Top1"]) <= 0.5
    assert ort_metrics["onnxruntime_version"] and ort_metrics["Latency"] > 0
    assert ort_metrics["latency"]["count"] >= 30 and ort_metrics["ir_bytes"] is None


def test_per_layer_comparison_matches_layers_by_name(fp32, onnx_path, test_split) -> None:
    bf16 = measure(onnx_path, Target(precision="bf16"), options=MeasureOptions.fast(throughput=False))
    rows = compare_profiles(bf16.profile, fp32.profile)
    names = {layer.name for layer in fp32.profile.layers} | {l.name for l in bf16.profile.layers}
    assert {row.name for row in rows} == names
    conv = next(row for row in rows if row.layer_type == "Convolution" and row.baseline_ms)
    ran = {"fp32": "f32", "bf16": "bf16"}[bf16.engine.precision]  # fp32 on CPUs without bf16
    assert ran in conv.exec_type and "f32" in conv.baseline_exec_type
    assert conv.speedup == pytest.approx(conv.baseline_ms / conv.ms)
    table = format_comparison(rows)
    assert conv.name in table and table.splitlines()[-1].startswith("TOTAL")


def test_accuracy_gap_is_flagged(onnx_path, test_split, fp32) -> None:
    images, labels = test_split
    wrong = fp32.to_metrics()["Top1"] + 5.0
    flagged = measure(onnx_path, Target(), images[:250], labels[:250],
                      MeasureOptions.fast(throughput=False, torch_top1=wrong)).to_metrics()
    assert "accuracy_flag" in flagged and "PyTorch" in flagged["accuracy_flag"]


def test_onnx_facts_count_what_the_graph_holds(onnx_path, resnet20) -> None:
    facts = onnx_facts(onnx_path)
    assert facts.input_shape == [None, 3, 32, 32] and facts.num_outputs == 10
    # BatchNorm is folded into conv biases: PyTorch's count minus one of BN's two vectors.
    bn = sum(m.num_features for m in resnet20.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert facts.params == sum(p.numel() for p in resnet20.parameters()) - bn


def test_the_precision_that_ran_is_recorded(onnx_path) -> None:
    metrics = measure(onnx_path, Target(precision="fp16"),
                      options=MeasureOptions.fast(throughput=False)).to_metrics()
    # CPUs without fp16 arithmetic fall back (to bf16 or fp32): the record says what ran.
    assert metrics["precision_requested"] == "fp16"
    assert metrics["precision"] == metrics["inference_precision"]
    float_precisions = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
    assert metrics["runtime_precisions"].get(float_precisions[metrics["precision"]], 0) > 0
