"""ONNX export: the written file reproduces PyTorch on real images, and a mismatch is an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pipeline.data import load_data, to_tensor_batch
from pipeline.export import ExportMismatchError, export_onnx
from pipeline.models import create_model, load_checkpoint
from pipeline.errors import UserError


def test_export_matches_pytorch_on_real_images(settings, checkpoint_resnet20, tmp_path: Path) -> None:
    model = create_model("resnet20_cifar")
    load_checkpoint(model, checkpoint_resnet20)
    model.train()  # export must switch to eval and back
    images = load_data(settings.data_path, settings.cache_dir).test.images[:64]
    report = export_onnx(model, tmp_path / "r20.onnx", check_images=images)
    assert model.training
    assert report.path.is_file() and report.onnx_bytes == report.path.stat().st_size
    assert report.checked_images == 64 and report.checked_on == "images"
    assert report.max_abs_diff <= report.atol and report.argmax_agreement == 1.0

    # Independently: a batch of 5 (the batch axis is dynamic) through ORT against PyTorch.
    batch = to_tensor_batch(images[:5])
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert list(tmp_path.iterdir()) == [report.path]  # no temporary file left


class TracesOneBranch(torch.nn.Module):
    """Data-dependent control flow: tracing with zeros records the wrong branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        return y * 3 if bool(x.mean() > 0.1) else y


def test_mismatch_raises_and_writes_nothing(tmp_path: Path) -> None:
    images = np.full((4, 3, 32, 32), 1.0, dtype=np.float32)  # mean 1.0 takes the other branch
    target = tmp_path / "bad.onnx"
    with pytest.raises(ExportMismatchError) as err:
        export_onnx(TracesOneBranch(), target, check_images=images)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert "tolerance" in str(err.value)
    assert not any(tmp_path.iterdir())

