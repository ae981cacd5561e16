"""A device latency model for pruned networks: predict Total_Latency without compiling a candidate.

Profile once per (base model, target): ``profile_latency`` times random pruned architectures and
fits a linear model of per-layer features (features.py); ``LatencyModel.predict_module`` /
``predict_onnx`` then price any architecture of that model in microseconds. See
docs/measurement.md ("Latency model") for the form and how well it predicts.
"""

from .architectures import ROUND_CHOICES, build_architecture, random_schedule, random_schedules
from .features import SIMD_BLOCKS, FeatureSpec, cpu_simd_block
from .model import FitInfo, LatencyModel, LatencyModelError, LatencyModels, format_summary, load_latency_model
from .profiling import DEFAULT_ARCHS, MeasureFn, export_unpruned, fit_latency_model, profile_latency, profile_options
from .shapes import LayerShape, shapes_of_module, shapes_of_onnx

__all__ = [
    "DEFAULT_ARCHS", "ROUND_CHOICES", "SIMD_BLOCKS", "FeatureSpec", "FitInfo", "LatencyModel",
    "LatencyModelError", "LatencyModels", "LayerShape", "MeasureFn", "build_architecture", "cpu_simd_block",
    "export_unpruned", "format_summary", "profile_options",
    "fit_latency_model", "load_latency_model", "profile_latency", "random_schedule",
    "random_schedules", "shapes_of_module", "shapes_of_onnx",
]
