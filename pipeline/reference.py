"""The unpruned model as a run's reference: its ONNX file and its accuracy, cached.

``edgeprune run`` times the pruned model in alternation with the unpruned one
(``MeasureOptions.reference_onnx``, measure/relative.py) to say how much faster pruning made it,
and compares the pruned Top1 with the unpruned one on the same images to say whether retraining
is needed. Exporting (~1 s) and evaluating (~1 s per 1,000 images on 2 cores) the unpruned model
every run would cost more than the comparison, so both are cached in ``<cache_dir>/references``.

The ONNX file does not depend on the target (the engine compiles it for the target when the run
measures it, so its latency is always fresh, timed beside the pruned model); the accuracy is the
PyTorch fp32 figure on the run's evaluation images.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import atomic_output, atomic_write_text
from .progress import announce

if TYPE_CHECKING:
    from .flow import RunConfig
    from .settings import Settings

log = logging.getLogger(__name__)

#: Check the exported reference against PyTorch on this many test images (as runs do).
CHECK_IMAGES = 64


@dataclass
class UnprunedReference:
    """The unpruned model of a run: its ONNX file and its Top1 on the run's evaluation images."""

    onnx_path: Path
    #: PyTorch Top1 (percent) on ``eval_count`` images of ``eval_split``.
    top1: float
    eval_split: str
    eval_count: int


def _key(config: "RunConfig", settings: "Settings") -> dict[str, Any]:
    from .models import default_checkpoint
    from .teacher import file_identity

    checkpoint = config.checkpoint or default_checkpoint(config.model, settings)
    return {"model": config.model, "shortcut": config.shortcut,
            "checkpoint": file_identity(Path(checkpoint)) if checkpoint else None}


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _announce(config: RunConfig, folder: Path, export: bool) -> None:
    """Say what the first run (for this model, checkpoint and images) spends its first seconds on, and why."""
    images = f"up to {config.eval_subset}" if config.eval_subset else "all"
    work = f"ONNX export and PyTorch Top1 on {images}" if export else f"PyTorch Top1 on {images}"
    announce(f"building the unpruned {config.model}'s reference once ({work} {config.eval_split} images; "
             f"kept in {folder}): the pruned model is timed beside the unpruned one and their Top1 compared")


def unpruned_reference(config: "RunConfig", settings: "Settings") -> UnprunedReference:
    """The unpruned ``config.model`` exported to ONNX and evaluated on ``config.eval_split``
    (first ``config.eval_subset`` images), each computed once and then read from the cache."""
    from .data import load_data, to_tensor_batch
    from .export import export_onnx
    from .flow import load_model
    from .training import evaluate

    key = _key(config, settings)
    folder = settings.cache_dir / "references"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{config.model}-{_digest(key)}"
    onnx_path, accuracy_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    accuracies: dict[str, Any] = json.loads(accuracy_path.read_text()) if accuracy_path.is_file() else {}
    data_key = _digest({"data": str(settings.data_path), "split": config.eval_split,
                        "subset": config.eval_subset, "val_fraction": config.val_fraction,
                        "seed": config.seed})
    if onnx_path.is_file() and data_key in accuracies:
        cached = accuracies[data_key]
        return UnprunedReference(onnx_path, cached["top1"], config.eval_split, cached["count"])
    _announce(config, folder, export=not onnx_path.is_file())
    data = load_data(settings.data_path, settings.cache_dir, val_fraction=config.val_fraction,
                     seed=config.seed)
    model = load_model(config, settings, num_classes=len(data.classes)).eval()
    if not onnx_path.is_file():
        with atomic_output(onnx_path) as partial:
            export_onnx(model, partial, check_images=to_tensor_batch(data.test.images[:CHECK_IMAGES]))
    accuracy = evaluate(model, data.split(config.eval_split, config.eval_subset))
    accuracies[data_key] = {"top1": accuracy.top1, "count": accuracy.count, "key": key}
    atomic_write_text(accuracy_path, json.dumps(accuracies, indent=2, default=str))
    return UnprunedReference(onnx_path, accuracy.top1, config.eval_split, accuracy.count)
