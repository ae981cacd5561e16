"""Predictions of a built-in network by PyTorch and by OpenVINO, to check a definition against a reference.

MLPerf Tiny publishes its ResNet-8 as a float TensorFlow Lite file; OpenVINO reads TensorFlow Lite
as well as ONNX, so the network edgeprune exports and the benchmark's own file run on one engine
and their Top1 predictions can be compared image by image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .spec import InputSpec

_BATCH = 500


def torch_predictions(model: nn.Module, spec: InputSpec, images: np.ndarray) -> np.ndarray:
    """Top1 class of each uint8 NHWC image by ``model`` in eval mode, on the CPU."""
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(spec.scale(chunk))).argmax(1).numpy()
                               for chunk in _chunks(images)])


def openvino_predictions(model_file: Path, images: np.ndarray, spec: InputSpec | None = None) -> np.ndarray:
    """Top1 class of each uint8 NHWC image by ``model_file``, as ``openvino_outputs`` runs it."""
    return openvino_outputs(model_file, images, spec).argmax(1)


def openvino_outputs(model_file: Path, images: np.ndarray, spec: InputSpec | None = None) -> np.ndarray:
    """The output (logits, or MLPerf's softmax) for each uint8 NHWC image by ``model_file`` (ONNX or
    TensorFlow Lite) on OpenVINO's CPU in f32.

    ``spec``: scale the images as it says, into NCHW (an ONNX file edgeprune exported); None feeds the
    pixels as NHWC floats in 0-255, as MLPerf Tiny's ``.tflite`` takes them.
    """
    import openvino as ov

    # f32 explicitly: on CPUs with bf16 units OpenVINO's default would run bf16, which is not the
    # float network either file holds.
    compiled = ov.Core().compile_model(str(model_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    outputs = []
    for chunk in _chunks(images):
        batch = spec.scale(chunk) if spec is not None else chunk.astype(np.float32)
        outputs.append(request.infer({0: batch})[compiled.output(0)].copy())
    return np.concatenate(outputs)


def _chunks(images: np.ndarray) -> list[np.ndarray]:
    return [images[start:start + _BATCH] for start in range(0, len(images), _BATCH)]
