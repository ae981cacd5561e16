"""Benchmarking of exported models on OpenVINO or ONNX Runtime: latency statistics, per-layer
profile, throughput, deployed accuracy, INT8 quantization and model facts.

``measure(onnx_path, target, eval_images, eval_labels, options) -> Measurement`` is the entry point;
``Measurement.to_metrics()`` gives the figures under the names of docs/architecture.md.
"""

from .accuracy import ACCURACY_GAP_POINTS, DeployedAccuracy, accuracy_gap
from .facts import OnnxFacts, onnx_facts
from .measurement import BACKENDS, Measurement, check_target, engine_version, measure, open_engine
from .options import EngineInfo, MeasureOptions
from .profile import LayerProfile, compare_profiles, format_comparison, format_profile
from .stats import LatencyStats, summarize

__all__ = [
    "ACCURACY_GAP_POINTS",
    "BACKENDS",
    "DeployedAccuracy",
    "EngineInfo",
    "LatencyStats",
    "LayerProfile",
    "MeasureOptions",
    "Measurement",
    "OnnxFacts",
    "accuracy_gap",
    "check_target",
    "compare_profiles",
    "engine_version",
    "format_comparison",
    "format_profile",
    "measure",
    "onnx_facts",
    "open_engine",
    "summarize",
]
