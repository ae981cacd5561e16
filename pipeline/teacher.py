"""The default distillation teacher: the unpruned model fine-tuned on the user's data, cached.

Distilling from the pretrained ResNet56 as it comes hurt on the JPEG CIFAR-10 (issue 15: it never
saw this data), so the default teacher is the unpruned network fine-tuned on the run's own data
with the run's own retraining budget. It is fine-tuned once, on first use, and cached in
``<cache_dir>/teachers/`` under a key of everything it depends on (model, checkpoint, data file,
split, budget); every later run with the same key loads it in a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .data import DataSplits
from .files import atomic_output
from .training import TrainConfig, train

log = logging.getLogger(__name__)


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies a file's content cheaply: its resolved path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}


def teacher_path(cache_dir: Path, model_name: str, key: Mapping[str, Any]) -> Path:
    """The cache file of the teacher identified by ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir / "teachers" / f"{model_name}-{digest}.pt"


def cached_teacher(load_unpruned: Callable[[], nn.Module], data: DataSplits, train_config: TrainConfig,
                   cache_dir: Path, model_name: str, key: Mapping[str, Any]) -> nn.Module:
    """The unpruned model fine-tuned with ``train_config`` on ``data``: from the cache, or trained
    now and cached (``atomic_output``: readers never see half a file)."""
    path = teacher_path(cache_dir, model_name, {**key, "budget": train_config.__dict__})
    teacher = load_unpruned()
    if path.is_file():
        teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        log.info("distillation teacher from %s", path)
        return teacher.to(train_config.device)
    log.info("fine-tuning the unpruned %s as distillation teacher (cached in %s)", model_name, path)
    train(teacher, data, train_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(teacher.state_dict(), tmp)
    return teacher
