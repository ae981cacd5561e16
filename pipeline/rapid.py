"""Rapid trials: prune → adaptive BN → Top1 on a few hundred val images → predicted latency.

No export, no consumer, no retraining: the first rung of a multi-fidelity sweep
(``pipeline.search.fidelity``), thousands of ResNet56 architectures an hour on 2 cores
(benchmarks/rapid_trials.py). ``RapidEvaluator`` loads the data, the pretrained base and the
calibration images once; each call prunes one copy of the base (pruning is in place, so one copy
a trial is the least there can be) and memoises the block ranking, which depends on the base and
the calibration only (the ``sensitivity`` criterion alone costs 25 adaptive-BN passes on ResNet56).

Top1 is evaluated in fp32: ``evaluate(precision="bf16")`` is slower on CPUs without native bf16
(no ``avx512_bf16``/AMX, as on the 2-core machine of docs/results.md) and ranks the same way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from .batchnorm import DEFAULT_RECALIBRATION_IMAGES, Calibration, recalibrate_bn
from .data import DataSplits, Split, load_data
from .flow import PREDICTED, RunConfig, Stages, collapse_reason, load_model, model_facts
from .messages import ModelFacts
from .pruning import load_schedule, prune_one_shot
from .settings import Settings
from .status import TrialStatus
from .training import evaluate

if TYPE_CHECKING:
    from .latency import LatencyModels

#: Validation images a rapid trial's Top1 is measured on (standard error about 2 points at 70%).
DEFAULT_RAPID_IMAGES = 500
#: The stages of a rapid trial, in order (``RapidResult.stage_seconds``).
RAPID_STAGES = ("prune", "recalibrate_bn", "evaluate", "predict")


@dataclass
class RapidResult:
    """One rapid trial: ``rapid`` (or ``collapsed``), its metrics and where the time went."""

    status: TrialStatus
    reason: str
    #: Top1_before/Top5_before (adaptive BN, on ``eval_images`` val images), Total_Latency_predicted
    #: (absent without a latency model), macs, params, blocks_removed, arch_signature,
    #: bn_recalibrate, eval_images.
    metrics: dict[str, Any]
    facts: ModelFacts
    stage_seconds: dict[str, float] = field(default_factory=dict)


class RapidEvaluator:
    """Rapid trials of one base configuration; ``evaluator(config)`` runs one (``config.overrides``
    and ``config.model`` say which architecture; data and calibration are the base's)."""

    def __init__(self, base: RunConfig, settings: Settings, latency_models: "LatencyModels | None" = None,
                 images: int = DEFAULT_RAPID_IMAGES):
        self.base = base
        self.settings = settings
        self.latency_models = latency_models
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.device = settings.torch_device()
        self.data: DataSplits = load_data(settings.data_path, settings.cache_dir, val_fraction=base.val_fraction,
                                          subset=base.subset, seed=base.seed)
        self.val: Split = self.data.val.head(images)
        self.calibration = Calibration.from_split(self.data.train, base.bn_recalibrate or DEFAULT_RECALIBRATION_IMAGES,
                                                  self.device)
        self.example = torch.zeros(1, 3, 32, 32, device=self.device)
        self._bases: dict[tuple[str, str], nn.Module] = {}
        self._rankings: dict[tuple[str, str], dict[tuple[Any, ...], list[str]]] = {}

    def _base_model(self, config: RunConfig) -> tuple[nn.Module, dict[tuple[Any, ...], list[str]]]:
        """The pretrained ``config.model``, loaded once, and the block rankings memoised on it."""
        key = (config.model, str(config.checkpoint or ""))
        if key not in self._bases:
            self._bases[key] = load_model(config, self.settings, len(self.data.classes)).to(self.device).eval()
            self._rankings[key] = {}
        return self._bases[key], self._rankings[key]

    def __call__(self, config: RunConfig | None = None, overrides: Sequence[str] | None = None) -> RapidResult:
        """One rapid trial of ``config`` (default: the base) with ``overrides`` in place of its own."""
        config = config or self.base
        stage = Stages(None)
        with stage("prune"):
            schedule = load_schedule(config.schedule, config.overrides if overrides is None else overrides)
            base, rankings = self._base_model(config)
            model = copy.deepcopy(base)
            report = prune_one_shot(model, schedule, self.example, calibration=self.calibration,
                                    block_rankings=rankings, cache_dir=self.settings.cache_dir)
            facts = model_facts(model, self.data)
        bn_images = config.bn_recalibrate
        if bn_images:
            with stage("recalibrate_bn"):
                recalibrate_bn(model, self.calibration.images[:bn_images])
        with stage("evaluate"):
            accuracy = evaluate(model, self.val, device=self.device)
        metrics: dict[str, Any] = {"Top1_before": accuracy.top1, "Top5_before": accuracy.top5,
                                   "macs": facts.macs, "params": facts.params,
                                   "blocks_removed": report.blocks_removed, "arch_signature": facts.arch_signature,
                                   "bn_recalibrate": bn_images,
                                   "eval_images": len(self.val)}
        if self.latency_models is not None:
            with stage("predict"):  # priced at the trial's own precision
                latency_model = self.latency_models.require(config.target, self.base.model)
                metrics[PREDICTED] = round(float(latency_model.predict_module(model)), 4)
        reason = collapse_reason(accuracy, len(self.data.classes))
        status = TrialStatus.COLLAPSED if reason else TrialStatus.RAPID
        return RapidResult(status, reason, metrics, facts, stage.seconds)
