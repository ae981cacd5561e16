"""Pretrained Top1 of the built-ins beyond the CIFAR ResNets, and ResNet-8's ONNX against MLPerf Tiny's .tflite.

Usage: python benchmarks/builtin_models.py [--shared DIR] [--archive FILE.tar.gz] [--out FILE.onnx]
Reads ``test_batch.bin`` of the CIFAR-10 binary version (default: the full lossless set in the
shared folder), prints the PyTorch Top1 of ``resnet8_tiny`` and ``shufflenetv2_x0_5_cifar``, then
exports ResNet-8 with ``pipeline.export`` and runs that ONNX and the benchmark's float ``.tflite``
on OpenVINO's CPU in f32: the Top1 of each and the share of images whose predictions agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.export import export_onnx  # noqa: E402
from pipeline.models import create_model, default_checkpoint, load_checkpoint, model_spec  # noqa: E402
from pipeline.data import load_data  # noqa: E402
from pipeline.models.crosscheck import openvino_predictions, torch_predictions  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

NAMES = ("resnet8_tiny", "shufflenetv2_x0_5_cifar")
TFLITE = "mlperf-tiny-resnet8.tflite"


def _pretrained(name: str, settings: Settings) -> nn.Module:
    path = default_checkpoint(name, settings)
    if path is None:
        sys.exit(f"Error: no checkpoint {model_spec(name).checkpoint_glob} in {settings.checkpoints_dir}")
    model = create_model(name)
    load_checkpoint(model, path)
    return model.eval()


def _percent(hits: np.ndarray) -> str:
    return f"{100.0 * float(hits.mean()):.2f}% ({int(hits.sum())}/{hits.size})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=None, help="shared folder (default: ../shared)")
    parser.add_argument("--archive", type=Path, default=None,
                        help="CIFAR-10 binary .tar.gz (default: SHARED/data/cifar-10-binary.tar.gz)")
    parser.add_argument("--out", type=Path, default=None, help="keep the exported ResNet-8 ONNX here")
    args = parser.parse_args()
    settings = Settings.load(shared_dir=args.shared) if args.shared else Settings.load()
    if settings.shared_dir is None or settings.checkpoints_dir is None:
        sys.exit("Error: shared folder not found: pass --shared DIR")
    archive = args.archive or settings.shared_dir / "data" / "cifar-10-binary.tar.gz"
    test = load_data(archive, settings.cache_dir).test
    images, labels = test.images, test.labels
    print(f"{archive}: {len(images)} test images")
    models = {name: _pretrained(name, settings) for name in NAMES}
    for name, model in models.items():
        print(f"{name} PyTorch Top1 {_percent(torch_predictions(model, model_spec(name).input, images) == labels)}")
    spec = model_spec("resnet8_tiny").input
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = args.out or Path(folder) / "resnet8_tiny.onnx"
        export_onnx(models["resnet8_tiny"], onnx_path, check_images=spec.scale(images[:256]))
        ours = openvino_predictions(onnx_path, images, spec)
    reference = openvino_predictions(settings.checkpoints_dir / TFLITE, images)
    print(f"resnet8_tiny ONNX (edgeprune) on OpenVINO f32 Top1 {_percent(ours == labels)}")
    print(f"{TFLITE} on OpenVINO f32 Top1 {_percent(reference == labels)}")
    print(f"identical Top1 predictions {_percent(ours == reference)}")


if __name__ == "__main__":
    main()
