"""Shared set-up of the measurement benchmarks: the pretrained ResNet56 exported to ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.export import export_onnx  # noqa: E402
from pipeline.models import create_model, default_checkpoint, load_checkpoint  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def pretrained_resnet56(settings: Settings | None = None) -> torch.nn.Module:
    """The pretrained ResNet56 (option-A shortcuts) in eval mode."""
    settings = settings or Settings.load()
    model = create_model("resnet56_cifar")
    load_checkpoint(model, default_checkpoint("resnet56_cifar", settings))
    return model.eval()


def export(model: torch.nn.Module, path: Path) -> Path:
    """``model`` exported (and checked against PyTorch) to ``path``."""
    return export_onnx(model, path).path


def budget_arguments(parser: argparse.ArgumentParser, steps: int, batch_size: int, eval_images: int) -> None:
    """The retraining budget and evaluation size flags of the recovery benchmarks."""
    parser.add_argument("--steps", type=int, default=steps, help="SGD steps (per epoch)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="train images per SGD step")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--eval-images", type=int, default=eval_images, help="first N test images")
