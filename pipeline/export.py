"""ONNX export with a proof: the written file must reproduce the PyTorch logits on real images.

torch 2.13's default (dynamo) exporter needs onnxscript, which is not a dependency, so the
TorchScript-based exporter (``dynamo=False``) is used at opset 17, which OpenVINO 2026 and
ONNX Runtime 1.32 both read. The batch axis is dynamic so that accuracy can run batched.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ModelError
from .files import atomic_output

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
#: Default tolerance on logits (max absolute difference). fp32 kernels of PyTorch and ONNX Runtime
#: differ by ~1e-5 on these ResNets' logits (magnitude ~10); 1e-3 leaves room for summation order
#: while still catching a wrong op, a missing BatchNorm or a mis-ordered channel (errors >> 1e-2).
DEFAULT_ATOL = 1e-3


class ExportMismatchError(ModelError):
    """The exported ONNX file does not reproduce the PyTorch model's logits."""


@dataclass
class ExportReport:
    """What was exported and how well the file reproduces PyTorch."""

    path: Path
    opset: int
    input_shape: tuple[int, ...]
    onnx_bytes: int
    #: How many images were compared, and whether they were real images or seeded noise.
    checked_images: int
    checked_on: str
    max_abs_diff: float
    atol: float
    #: Share of checked images whose arg-max class is the same in both (1.0 expected).
    argmax_agreement: float
    seconds: float


def _check_inputs(check_images: np.ndarray | None, input_shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """Normalised float32 NCHW check inputs: real images as given (uint8 NHWC is normalised), or noise."""
    if check_images is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal((8, *input_shape[1:]), dtype=np.float32), "seeded noise"
    images = np.asarray(check_images)
    if images.dtype == np.uint8:
        from .data import to_tensor_batch

        images = to_tensor_batch(images)
    return np.ascontiguousarray(images, dtype=np.float32), "images"


def _torch_logits(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(chunk).to(device)).float().cpu()
                          for chunk in np.array_split(images, max(1, len(images) // 256))]).numpy()


def export_onnx(model: torch.nn.Module, path: Path | str, input_shape: tuple[int, ...] = (1, 3, 32, 32),
                check_images: np.ndarray | None = None, atol: float = DEFAULT_ATOL) -> ExportReport:
    """Export ``model`` (eval mode) to ONNX at ``path`` and check it with ONNX Runtime.

    ``check_images``: real images to compare logits on (normalised float32 NCHW, or uint8 NHWC);
    None compares on 8 seeded noise inputs. The file appears at ``path`` only after the check
    passed (written to a temporary name, then renamed); a max absolute logit difference above
    ``atol`` raises ExportMismatchError.
    """
    import onnxruntime as ort

    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with atomic_output(path) as tmp:
            example = torch.zeros(input_shape, device=device)
            with warnings.catch_warnings():
                # The TorchScript exporter warns about constant folding of option-A shortcut slices.
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
            images, checked_on = _check_inputs(check_images, input_shape)
            expected = _torch_logits(model, images, device)
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = session.run(None, {INPUT_NAME: images})[0]
            diff = float(np.abs(got - expected).max())
            agreement = float((got.argmax(1) == expected.argmax(1)).mean())
            if not diff <= atol:  # also catches NaN
                raise ExportMismatchError(
                    f"{path}: the exported ONNX differs from PyTorch by {diff:.3g} on the logits of "
                    f"{len(images)} {checked_on} (tolerance {atol:g}): the model holds an op the exporter "
                    "translates differently; check custom layers, or pass a larger atol if this is "
                    "expected rounding")
    finally:
        model.train(was_training)
    report = ExportReport(path=path, opset=OPSET, input_shape=tuple(input_shape),
                          onnx_bytes=path.stat().st_size, checked_images=len(images),
                          checked_on=checked_on, max_abs_diff=diff, atol=atol,
                          argmax_agreement=agreement, seconds=time.perf_counter() - started)
    log.info("exported %s (%d bytes), max |logit diff| %.2g on %d %s", path, report.onnx_bytes,
             diff, len(images), checked_on)
    return report
