"""How long one retraining epoch of a pruned model takes on this machine, from a few timed steps.

``edgeprune run --epochs 0`` tells the user when the pruned model needs retraining; the hint is
only useful with its cost ("--epochs 1 takes about 12 min here"), and that depends on the pruned
architecture, the CPU and its threads, so it is timed rather than looked up: a few training
steps (forward, backward, SGD step on augmented batches, as ``training.train`` does) and one
validation batch, scaled to an epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import socket
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .data import Split, batches
from .files import atomic_write_text
from .progress import announce
from .training import evaluate

if TYPE_CHECKING:
    from .flow import RunConfig
    from .settings import Settings

#: Timed training steps after one untimed warm-up step (the first allocates and tunes kernels).
#: One: a ResNet56 step of 128 images takes seconds on 2 cores, and the figure is cached.
TIMED_STEPS = 1
#: Validation images timed to scale the per-epoch validation pass.
TIMED_EVAL_IMAGES = 250
#: The cache of estimates in the cache folder.
CACHE_NAME = "retrain_time.json"


@dataclass
class EpochEstimate:
    """One retraining epoch's expected wall time, and what it was scaled from."""

    seconds: float
    step_s: float
    steps_per_epoch: int
    validation_s: float
    timed_steps: int

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0


def time_train_steps(model: nn.Module, split: Split, batch_size: int, steps: int = TIMED_STEPS,
                     device: str = "cpu", lr: float = 0.01) -> float:
    """Median seconds of one SGD training step of a copy of ``model`` (the model is untouched)."""
    trainee = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(trainee.parameters(), lr=lr, momentum=0.9)
    times = []
    stream = batches(split, batch_size, shuffle=True, augment=True, seed=0)
    for _, (images, labels) in zip(range(steps + 1), stream):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(trainee(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] or times)


def estimate_epoch(model: nn.Module, train_split: Split, val_split: Split, batch_size: int,
                   device: str = "cpu", steps: int = TIMED_STEPS) -> EpochEstimate:
    """One epoch of ``training.train`` on these splits: timed steps times the steps per epoch,
    plus the validation pass scaled from ``TIMED_EVAL_IMAGES`` images."""
    step_s = time_train_steps(model, train_split, batch_size, steps, device)
    steps_per_epoch = math.ceil(len(train_split) / batch_size)
    sample = val_split.head(TIMED_EVAL_IMAGES)
    start = time.perf_counter()
    evaluate(model, sample, device=device)
    validation_s = (time.perf_counter() - start) * len(val_split) / max(1, len(sample))
    return EpochEstimate(seconds=step_s * steps_per_epoch + validation_s, step_s=step_s,
                         steps_per_epoch=steps_per_epoch, validation_s=validation_s,
                         timed_steps=steps)


def estimate_run_epoch(config: "RunConfig", settings: "Settings", architecture: str = "", why: str = ""
                       ) -> EpochEstimate:
    """``estimate_epoch`` for the pruned model of ``config`` (pruned again here: one-shot pruning
    takes well under a second, and ``produce`` keeps no model once it has exported it).

    With ``architecture`` (the pruned model's ``arch_signature``) the estimate is cached in
    ``<cache_dir>/retrain_time.json`` per architecture, batch, torch device and threads and host:
    a rerun of the same pruned model reads it instead of timing again. When it times, it says so
    first on stderr, with ``why`` (what the estimate is for).
    """
    from .batchnorm import DEFAULT_RECALIBRATION_IMAGES, Calibration
    from .data import load_data
    from .flow import load_model, read_schedule
    from .pruning import prune_one_shot

    device = settings.torch_device()
    cache_path = settings.cache_dir / CACHE_NAME
    key = json.dumps({"architecture": architecture, "model": config.model, "batch": config.batch_size,
                      "subset": config.subset, "val_fraction": config.val_fraction,
                      "max_steps": config.max_steps_per_epoch, "device": device,
                      "threads": torch.get_num_threads(), "host": socket.gethostname(),
                      "data": str(settings.data_path)}, sort_keys=True)
    cached = json.loads(cache_path.read_text()) if architecture and cache_path.is_file() else {}
    if key in cached:
        return EpochEstimate(**cached[key])
    announce(f"estimating how long one retraining epoch takes here{f' ({why})' if why else ''}: "
             f"pruning again and timing {TIMED_STEPS + 1} training steps and {TIMED_EVAL_IMAGES} validation images")
    data = load_data(settings.data_path, settings.cache_dir, val_fraction=config.val_fraction,
                     subset=config.subset, seed=config.seed)
    model = load_model(config, settings, num_classes=len(data.classes)).to(device)
    calibration = Calibration.from_split(data.train, config.bn_recalibrate or DEFAULT_RECALIBRATION_IMAGES,
                                         device)
    prune_one_shot(model, read_schedule(config, model), torch.zeros(1, 3, 32, 32, device=device),
                   calibration=calibration, cache_dir=settings.cache_dir)
    train_images = data.train if config.max_steps_per_epoch is None else \
        data.train.head(config.max_steps_per_epoch * config.batch_size)
    estimate = estimate_epoch(model, train_images, data.val, config.batch_size, device)
    if architecture:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path, json.dumps({**cached, key: dataclasses.asdict(estimate)}, indent=1))
    return estimate
