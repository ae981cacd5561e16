"""The producer's and consumer's steps as plain functions.

``produce`` takes a run configuration to an exported ONNX model (schedule → pruning → [gate] →
retraining → export); ``consume`` measures one job's model on its target (``measure_work`` hands
it to a queue ``Worker`` or to the in-process queue). ``edgeprune run``, the
agents, sweeps and baselines all call these, so the pipeline logic exists once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import torch

from .batchnorm import DEFAULT_RECALIBRATION_IMAGES, Calibration, recalibrate_bn
from .data import MEAN, STD, DataSplits, load_data, to_tensor_batch
from .errors import UserError
from .errors import shown as errors_shown
from .files import atomic_write_text
from .messages import ArtifactRef, Job, ModelFacts, Result, Target
from .models import count_macs_params, create_model, default_checkpoint, load_checkpoint
from .pruning import CompressionScheduler, PruneReport, arch_signature, load_schedule, prune_one_shot, validate_schedule
from .pruning.coverage import PolicyCoverage, policy_coverage, warn_uncovered
from .pruning.sparsity import SparsityReport, measure_sparsity, weight_shapes
from .schedule import Override, Schedule, check_round_to, to_overrides
from .settings import Settings
from .status import JobStatus, TrialStatus
from .training import Accuracy, TrainConfig, evaluate, train

if TYPE_CHECKING:
    from .distill import Distillation
    from .measure import MeasureOptions
    from .queue.worker import WorkFn

log = logging.getLogger(__name__)

#: Shown beside accuracies, which say their split and image count: what the two splits are.
ACCURACY_NOTE = ("'val' accuracy is on images held out of the data set's train split, 'test' accuracy "
                 "on its test split")

#: A pruned network has collapsed unless its Top1 is above chance (100/n) with this confidence:
#: the one-sided binomial p-value of its correct count under guessing must be below it.
COLLAPSE_P_VALUE = 0.01
#: ... and it has collapsed whenever it predicts one class for at least this share of the images.
COLLAPSE_CLASS_SHARE = 0.8


@dataclass
class RunConfig:
    """Everything one prune-retrain-export run needs besides the settings."""

    schedule: Path | str
    #: Schedule edits; ``--set`` strings or a ``{"<instance>.<key>": value}`` mapping are converted on load.
    overrides: Sequence[Override | str] | Mapping[str, Any] = ()
    model: str = "resnet56_cifar"
    shortcut: str = "A"
    #: None: the pretrained checkpoint for ``model`` in the settings' models folder.
    checkpoint: Path | None = None
    epochs: int = 0
    lr: float = 0.01
    #: ``cosine``: anneal the lr to 0 over the retraining's steps (``training.LR_ANNEALS``).
    lr_anneal: str = "none"
    batch_size: int = 128
    max_steps_per_epoch: int | None = None
    val_fraction: float = 0.1
    #: Use only N train images (fast runs); validation is split off before this.
    subset: int | None = None
    #: Split that final accuracies (PyTorch and deployed) are computed on.
    eval_split: str = "test"
    #: Evaluate on the first N images of ``eval_split`` only (0: all).
    eval_subset: int = 0
    #: Evaluate the pruned model (collapse check, gate, Top1_before) on the first N validation
    #: images only (0: all); retraining's per-epoch validation uses all of them.
    val_subset: int = 0
    target: Target = field(default_factory=Target)
    retrain_collapsed: bool = False
    #: Also evaluate the PyTorch model on ``eval_split`` when it was not retrained. Off by default:
    #: the model is then the pruned one already evaluated on val, its ONNX export is checked against
    #: PyTorch's logits, and the consumer measures the deployed model on ``eval_split`` anyway; on
    #: 2 cores the extra pass costs ~11 s for ResNet56 on 10,000 images.
    torch_eval: bool = False
    seed: int = 0
    #: Re-estimate BatchNorm statistics on the first N train images after pruning, before the
    #: pruned model is evaluated, gated and retrained (adaptive BN; 0: off).
    bn_recalibrate: int = DEFAULT_RECALIBRATION_IMAGES
    #: With adaptive BN, also evaluate the pruned model before it (``Top1_before_raw``): one more
    #: validation pass, which ``edgeprune run`` skips (it is 1.3 of its 15 s on 2 cores).
    raw_eval: bool = True
    #: Knowledge distillation while retraining: the teacher checkpoint (an unpruned
    #: ``kd_teacher_model``; None: that model's pretrained weights fine-tuned on this data with
    #: this budget, cached), its loss weight (0: no distillation) and temperature.
    kd_teacher: Path | None = None
    #: The teacher's network, whatever ``model`` is: every base of a sweep over ``model``
    #: distils from the same teacher, so their accuracies compare.
    kd_teacher_model: str = "resnet56_cifar"
    kd_weight: float = 0.0
    kd_temperature: float = 4.0
    #: Sweep parameters, recorded with the job and the result.
    params: dict[str, Any] = field(default_factory=dict)
    #: The unpruned network the consumer times the model against (``Relative_Latency``): a
    #: sweep's base model, the same for every trial so that trials of several bases compare
    #: ("": ``model`` itself).
    reference_model: str = ""


@dataclass
class Produced:
    """What a producer made: the model file and everything known about it before measurement."""

    run_id: str
    out_dir: Path
    onnx_path: Path | None
    schedule_yaml: str
    facts: ModelFacts
    metrics: dict[str, Any]
    #: ok | collapsed | gated | early_stopped
    status: TrialStatus
    reason: str
    stage_seconds: dict[str, float]
    prune_report: PruneReport | None
    config: RunConfig
    #: Element sparsity and kept channels of every weight against the unpruned model, taken last,
    #: so fine-grained zeros and structured removal are told apart whatever pruned them.
    sparsity: SparsityReport | None = None
    #: Policies the epochs actually run left out (never fired, or cut short).
    coverage: PolicyCoverage | None = None


#: What a latency model (``pipeline.latency``) predicts, and the name its prediction is recorded
#: under beside the measured figure, which is the one records and rankings use.
PREDICTED_METRIC = "Total_Latency"
PREDICTED = "Total_Latency_predicted"


@runtime_checkable
class ModuleGate(Protocol):
    """A gate that judges the pruned module itself (a latency model's prediction), so ``produce``
    exports nothing for it; ``metrics`` is what it learnt (recorded with the run)."""

    metrics: dict[str, Any]

    def judge_module(self, model: torch.nn.Module, facts: ModelFacts) -> "str | None": ...


#: ``gate(onnx_of_pruned_model, facts) -> reason | None`` (measures the export), or a ModuleGate.
GateFn = Union[Callable[[Path, ModelFacts], "str | None"], ModuleGate]
EpochFn = Callable[[int, Accuracy], bool]
StageFn = Callable[[str, float], None]


class Stages:
    """Times named stages and tells an optional listener when each one ends."""

    def __init__(self, listener: StageFn | None) -> None:
        self.seconds: dict[str, float] = {}
        self._listener = listener

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("%s ...", name)
        yield
        elapsed = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        log.info("%s done in %.2f s", name, elapsed)
        if self._listener is not None:
            self._listener(name, elapsed)


def load_model(config: RunConfig, settings: Settings, num_classes: int = 10) -> torch.nn.Module:
    """The configured model with its pretrained weights (random weights only when none exist)."""
    model = create_model(config.model, num_classes=num_classes, shortcut=config.shortcut)
    checkpoint = config.checkpoint or default_checkpoint(config.model, settings)
    if checkpoint is None:
        raise UserError(f"no pretrained checkpoint for {config.model}: pass --checkpoint FILE or "
                        "--models-dir DIR holding resnet<depth>-*.th")
    load_checkpoint(model, checkpoint)
    return model


def read_schedule(config: RunConfig, model: torch.nn.Module) -> Schedule:
    """The run's schedule with its overrides applied, validated against ``model`` (a ``round_to``
    that would prune nothing included)."""
    schedule = load_schedule(config.schedule, config.overrides)
    validate_schedule(schedule, model)
    check_round_to(schedule, dict(model.named_parameters()))
    return schedule


def model_facts(model: torch.nn.Module, data: DataSplits) -> ModelFacts:
    """Size and input facts that travel with the job."""
    macs, params = count_macs_params(model)
    return ModelFacts(input_shape=[1, 3, 32, 32], num_classes=len(data.classes), mean=list(MEAN),
                      std=list(STD), macs=macs, params=params, arch_signature=arch_signature(model))


def chance_p_value(top1: float, count: int, num_classes: int) -> float:
    """P(a guesser scores at least ``top1`` percent on ``count`` images of ``num_classes``
    classes): the exact upper binomial tail at p = 1/num_classes (1.0 without images)."""
    successes = round(top1 * count / 100)
    if count <= 0 or successes <= 0:
        return 1.0
    p = 1.0 / num_classes
    log_p, log_q = math.log(p), math.log1p(-p)
    log_terms = [math.lgamma(count + 1) - math.lgamma(k + 1) - math.lgamma(count - k + 1)
                 + k * log_p + (count - k) * log_q for k in range(successes, count + 1)]
    peak = max(log_terms)
    return min(1.0, math.exp(peak) * math.fsum(math.exp(t - peak) for t in log_terms))


def collapse_reason(accuracy: Accuracy, num_classes: int) -> str:
    """Why a pruned network is no better than guessing ('' when it is better): its Top1 on
    ``accuracy.count`` images is not above chance with confidence (one-sided binomial test,
    p >= ``COLLAPSE_P_VALUE``; below chance too: retraining from there is rarely worth it), or
    one class takes at least ``COLLAPSE_CLASS_SHARE`` of the predictions."""
    chance = 100.0 / num_classes
    p_value = chance_p_value(accuracy.top1, accuracy.count, num_classes)
    if p_value >= COLLAPSE_P_VALUE:
        return (f"validation Top1 {accuracy.top1:.2f}% on {accuracy.count:,} images after pruning is "
                f"not above chance ({chance:.1f}%) with confidence (one-sided binomial p = "
                f"{p_value:.2g} >= {COLLAPSE_P_VALUE:g}): the network is guessing")
    if accuracy.top_class_share >= COLLAPSE_CLASS_SHARE:
        return (f"after pruning, {100 * accuracy.top_class_share:.0f}% of the validation images "
                "are predicted as one class: the network predicts one class")
    return ""


def is_collapsed(top1: float, num_classes: int, count: int, top_class_share: float = math.nan) -> bool:
    """True when a pruned network scoring ``top1`` percent on ``count`` images is no better than
    guessing (see ``collapse_reason``)."""
    return bool(collapse_reason(Accuracy(top1, math.nan, math.nan, count, top_class_share), num_classes))


def _device(settings: Settings) -> str:
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return settings.torch_device()


def produce(config: RunConfig, settings: Settings, out_dir: Path, gate: GateFn | None = None,
            on_epoch: EpochFn | None = None, on_stage: StageFn | None = None) -> Produced:
    """Prune, retrain and export one model into ``out_dir`` (which must exist).

    ``gate(onnx_of_pruned_model, facts)`` may veto retraining by returning a reason (latency gate);
    a ``ModuleGate`` judges the pruned module instead, with no export, and its ``metrics`` (the
    predicted latency) join the run's;
    ``on_epoch(epoch, val_accuracy)`` may stop retraining early by returning False.
    """
    stage = Stages(on_stage)
    device = _device(settings)
    run_id = uuid.uuid4().hex[:12]
    with stage("schedule"):
        # Validate before anything heavy, so a bad schedule fails in milliseconds.
        probe = create_model(config.model, shortcut=config.shortcut)
        schedule = read_schedule(config, probe)
        schedule_yaml = schedule.to_yaml()
        (out_dir / "schedule.yaml").write_text(schedule_yaml)
        warn_uncovered(schedule, config.epochs)
    with stage("data"):
        data = load_data(settings.data_path, settings.cache_dir, val_fraction=config.val_fraction,
                         subset=config.subset, seed=config.seed)
    with stage("model"):
        model = load_model(config, settings, num_classes=len(data.classes)).to(device)
        macs_before, params_before = count_macs_params(model)
        shapes_before = weight_shapes(model)
    # Train images for data-driven pruning criteria and for adaptive BN.
    calibration = Calibration.from_split(data.train, config.bn_recalibrate or DEFAULT_RECALIBRATION_IMAGES, device)
    with stage("prune"):
        report = prune_one_shot(model, schedule, torch.zeros(1, 3, 32, 32, device=device), calibration=calibration,
                                cache_dir=settings.cache_dir)
        facts = model_facts(model, data)
    metrics: dict[str, Any] = {"model": config.model, "macs": facts.macs, "params": facts.params,
                               "macs_before": macs_before, "params_before": params_before,
                               "blocks_removed": report.blocks_removed, "bn_recalibrate": config.bn_recalibrate}
    val = data.split("val", config.val_subset)
    if config.raw_eval or not config.bn_recalibrate:
        with stage("evaluate_pruned"):
            before = evaluate(model, val, device=device)
        metrics.update(Top1_before_raw=before.top1, Top5_before_raw=before.top5)
    if config.bn_recalibrate:
        with stage("recalibrate_bn"):
            recalibrate_bn(model, calibration.images[: config.bn_recalibrate])
            before = evaluate(model, val, device=device)
    metrics.update(Top1_before=before.top1, Top5_before=before.top5, eval_images=before.count)
    status, reason = TrialStatus.OK, collapse_reason(before, len(data.classes))
    if reason:
        status = TrialStatus.COLLAPSED
        log.warning("run %s collapsed: %s", run_id, reason)
    if gate is not None and status == TrialStatus.OK:
        with stage("gate"):
            if isinstance(gate, ModuleGate):
                verdict = gate.judge_module(model, facts)
                metrics.update(gate.metrics)
            else:
                gate_path = _export(model, out_dir / "pruned.onnx", data)
                verdict = gate(gate_path, facts)
                gate_path.unlink(missing_ok=True)
        if verdict:
            status, reason = TrialStatus.GATED, verdict
    train_now = config.epochs > 0 and (status == TrialStatus.OK or (status == TrialStatus.COLLAPSED and config.retrain_collapsed))
    if train_now:
        with stage("retrain"):
            # after=report: the one-shot pruners already fired; only gradual ones and lr schedulers remain.
            hooks = CompressionScheduler(model, schedule, after=report)
            train_config = TrainConfig(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                                       max_steps_per_epoch=config.max_steps_per_epoch, device=device,
                                       seed=config.seed, lr_anneal=config.lr_anneal)
            loss_fn = _distillation(config, settings, data, train_config, stage)
            trained = train(model, data, train_config, hooks=hooks, on_epoch=on_epoch, loss_fn=loss_fn)
            facts = model_facts(model, data)
        metrics.update(epochs_run=trained.epochs_run, macs=facts.macs, params=facts.params,
                       retrain_seconds=round(trained.seconds, 3), lr_anneal=config.lr_anneal)
        if loss_fn is not None:
            metrics.update(kd_weight=config.kd_weight, kd_temperature=config.kd_temperature,
                           kd_teacher_model=config.kd_teacher_model,
                           kd_teacher=str(config.kd_teacher or "fine-tuned unpruned model (cached)"))
        if trained.stopped_early:
            status, reason = TrialStatus.EARLY_STOPPED, f"stopped after epoch {trained.epochs_run - 1}"
    coverage = policy_coverage(schedule, trained.epochs_run if train_now else 0)
    sparsity = measure_sparsity(model, shapes_before)
    metrics.update(element_sparsity=sparsity.element_sparsity, removed_fraction=sparsity.removed_fraction,
                   effective_sparsity=sparsity.effective_sparsity)
    onnx_path = None
    if status in (TrialStatus.OK, TrialStatus.COLLAPSED):
        if train_now or config.torch_eval:
            with stage("evaluate"):
                final = evaluate(model, data.split(config.eval_split, config.eval_subset), device=device)
            metrics.update(Top1_torch=final.top1, Top5_torch=final.top5)
        with stage("export"):
            onnx_path = _export(model, out_dir / "model.onnx", data)
            metrics["onnx_bytes"] = onnx_path.stat().st_size
    return Produced(run_id=run_id, out_dir=out_dir, onnx_path=onnx_path, schedule_yaml=schedule_yaml,
                    facts=facts, metrics=metrics, status=status, reason=reason,
                    stage_seconds=stage.seconds, prune_report=report, config=config, sparsity=sparsity,
                    coverage=coverage)


def _distillation(config: RunConfig, settings: Settings, data: DataSplits, train_config: TrainConfig,
                  stage: Stages) -> "Distillation | None":
    """The distillation loss of the run, or None without ``kd_weight``; the default teacher is
    fine-tuned (first use, same budget as the run) or read from the cache."""
    if not config.kd_weight:
        return None
    from .distill import Distillation
    from .teacher import cached_teacher, file_identity

    # The student's own checkpoint seeds the teacher only when both are the same network.
    own = config.checkpoint if config.kd_teacher_model == config.model else None
    teacher_config = dataclasses.replace(config, model=config.kd_teacher_model, checkpoint=config.kd_teacher or own)

    def unpruned() -> torch.nn.Module:
        return load_model(teacher_config, settings, num_classes=len(data.classes)).to(train_config.device)

    with stage("teacher"):
        if config.kd_teacher is not None:
            teacher = unpruned()
        else:
            model = teacher_config.model
            checkpoint = teacher_config.checkpoint or default_checkpoint(model, settings)
            key = {"model": model, "shortcut": config.shortcut, "data": file_identity(settings.data_path),
                   "checkpoint": file_identity(Path(checkpoint)) if checkpoint else None,
                   "subset": config.subset, "val_fraction": config.val_fraction}
            teacher = cached_teacher(unpruned, data, train_config, settings.cache_dir, model, key)
    return Distillation(teacher, config.kd_weight, config.kd_temperature)


def _export(model: torch.nn.Module, path: Path, data: DataSplits) -> Path:
    from .export import export_onnx

    # A CPU copy: the gate exports mid-run, and training may go on on the GPU afterwards.
    export_onnx(copy.deepcopy(model).cpu().eval(), path,
                check_images=to_tensor_batch(data.test.images[:64]))
    return path


def job_for(produced: Produced, target: Target | None = None, eval_split: str | None = None) -> Job:
    """A job for ``produced``'s model; the queue fills in the artifact when it stores the file."""
    config = produced.config
    return Job(job_id=uuid.uuid4().hex, run_id=produced.run_id,
               artifact=ArtifactRef(uri="", sha256="", size=0),
               target=target or config.target, model=produced.facts,
               schedule_yaml=produced.schedule_yaml, params=dict(config.params),
               eval_split=config.eval_split if eval_split is None else eval_split,
               eval_subset=config.eval_subset, producer_host=socket.gethostname(),
               reference_model=config.reference_model or config.model,
               reference_shortcut=config.shortcut)


def consume(job: Job, onnx_path: Path, settings: Settings, options: "MeasureOptions | None" = None) -> Result:
    """Measure ``job``'s model on its target, with deployed accuracy on ``job.eval_split``.

    A problem with the job or its model becomes a failed Result with the reason; it never yields
    figures, so no stale or partial numbers are recorded.
    """
    from .measure import MeasureOptions, measure

    started = time.time()
    consumer = f"{socket.gethostname()}:{os.getpid()}"
    options = options or MeasureOptions()
    external_reference = options.reference_onnx is not None
    try:
        if not external_reference and job.reference_model:
            reference = unpruned_onnx(job.reference_model, job.reference_shortcut,
                                      job.model.num_classes, settings)
            options = dataclasses.replace(options, reference_onnx=str(reference))
        images = labels = None
        if job.eval_split or job.target.precision == "int8":
            data = _consumer_data(settings.data_path, settings.cache_dir)
        if job.eval_split:
            split = data.split(job.eval_split, job.eval_subset)
            images, labels = to_tensor_batch(split.images), split.labels
        if job.target.precision == "int8" and options.calibration_images is None:
            options = dataclasses.replace(options, calibration_images=data.calibration_images())
        measurement = measure(onnx_path, job.target, images, labels, options)
    except UserError as exc:
        return Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.FAILED, error=str(exc),
                      consumer=consumer, target=job.target, started_at=started, finished_at=time.time())
    metrics = measurement.to_metrics()
    if measurement.relative is not None and job.reference_model and not external_reference:
        metrics["relative_reference_model"] = job.reference_model  # checked by unpruned_onnx
    return Result(job_id=job.job_id, run_id=job.run_id, status=JobStatus.OK, metrics=metrics,
                  consumer=consumer, target=job.target, started_at=started, finished_at=time.time())


#: Shortcut kinds a job may name for its reference network (``pipeline.models.create_model``).
SHORTCUTS = ("A", "B")
#: Class counts a reference network may be built with (a job's head; bounded before any work).
MAX_CLASSES = 10_000


def unpruned_onnx(model: str, shortcut: str, num_classes: int, settings: Settings) -> Path:
    """The unpruned ``model`` as ONNX, exported once per consumer into ``<cache_dir>/references``
    and then read from there (the reference engine itself is compiled once per process).

    The name comes from a queue job, so it is checked against the known networks before it names
    a file. Latency depends on the architecture, not the weights: the consumer's pretrained
    checkpoint is used when it has one for a 10-class option-A network, seeded random weights
    otherwise (as ``pipeline.latency`` profiles). A bad name is a UserError (a failed Result).
    """
    from .models import MODEL_NAMES

    if model not in MODEL_NAMES or shortcut not in SHORTCUTS \
            or not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"the job names the reference network {errors_shown(model)} (shortcut "
                        f"{errors_shown(shortcut)}, {errors_shown(num_classes)} classes): use one "
                        f"of {', '.join(MODEL_NAMES)}, shortcut A or B, 1 to {MAX_CLASSES} classes")
    path = settings.cache_dir / "references" / f"unpruned-{model}-{shortcut}-{num_classes}.onnx"
    if not path.is_file():
        log.info("exporting the unpruned %s once as the Relative_Latency reference (%s)", model, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _export_reference(model, shortcut, num_classes, settings, path)
    return path


def _export_reference(model: str, shortcut: str, num_classes: int, settings: Settings,
                      path: Path) -> None:
    from .export import DEFAULT_ATOL, export_onnx
    from .files import atomic_output

    checkpoint = default_checkpoint(model, settings)
    atol = DEFAULT_ATOL
    if checkpoint is not None and shortcut == "A" and num_classes == 10:
        network = create_model(model, num_classes=num_classes, shortcut=shortcut)
        load_checkpoint(network, checkpoint)
    elif shortcut == "A" and num_classes == 10:
        from .latency.architectures import build_architecture

        network = build_architecture(model)
    else:
        torch.manual_seed(0)
        network = create_model(model, num_classes=num_classes, shortcut=shortcut)
        # Untrained deep logits differ between engines; only the reference's timing is read.
        atol = math.inf
    with atomic_output(path) as partial:
        export_onnx(network.eval(), partial, atol=atol)


def measure_work(settings: Settings, options: "MeasureOptions | None" = None) -> "WorkFn":
    """``consume`` as a queue ``Worker``'s work: measure on the job's target, deployed accuracy."""

    def work(job: Job, onnx_path: Path) -> Result:
        return consume(job, onnx_path, settings, options)

    return work


@functools.lru_cache(maxsize=1)
def _consumer_data(path: Path, cache_dir: Path) -> DataSplits:
    """The data set a consumer evaluates on, loaded once per process: a consumer serves many jobs."""
    return load_data(path, cache_dir)


def result_record(produced: Produced, result: Result | None, pending_job: str = "") -> dict[str, Any]:
    """The JSON record of a run: configuration, producer and consumer figures, timings.

    ``pending_job`` names a queued job whose result has not come yet: the record then says
    ``pending`` and holds no consumer figures, never stale ones.
    """
    config = produced.config
    metrics = dict(produced.metrics)
    status, reason = produced.status, produced.reason
    if pending_job:
        status, reason = TrialStatus.PENDING, f"job {pending_job} is queued; its result is stored when it comes"
    elif result is not None:
        metrics.update(result.metrics)
        if not result.ok:
            status, reason = TrialStatus.FAILED, result.error
    from .measure.accuracy import accuracy_gap

    top1_gap = gap_flag = None
    if "Top1" in metrics and "Top1_torch" in metrics:
        top1_gap = round(float(metrics["Top1"]) - float(metrics["Top1_torch"]), 3)
        gap_flag = accuracy_gap(float(metrics["Top1"]), float(metrics["Top1_torch"]))
    layers = []
    if produced.sparsity is not None:
        layers = [w for w in produced.sparsity.to_dict()["weights"]
                  if w["shape_after"] != w["shape_before"] or w["element_sparsity"] > 0]
    return {
        "run_id": produced.run_id,
        "status": status,
        "reason": reason,
        "model": config.model,
        "shortcut": config.shortcut,
        "schedule": str(config.schedule) if isinstance(config.schedule, Path) else "<text>",
        "overrides": [str(o) for o in to_overrides(config.overrides)],
        "params": config.params,
        "epochs": config.epochs,
        "lr": config.lr,
        "eval_split": config.eval_split,
        "target": (result.target if result else config.target).to_dict(),
        "consumer": result.consumer if result else "",
        "metrics": metrics,
        "deployed_minus_torch_top1": top1_gap,
        "accuracy_gap_flagged": gap_flag is not None,
        "pruned_layers": layers,
        "policies_not_fired": produced.coverage.not_fired if produced.coverage else [],
        "policies_truncated": produced.coverage.truncated if produced.coverage else [],
        "arch_signature": produced.facts.arch_signature,
        "stage_seconds": {k: round(v, 3) for k, v in produced.stage_seconds.items()},
        "note": ACCURACY_NOTE,
    }


def write_result(out_dir: Path, produced: Produced, result: Result | None, pending_job: str = "") -> Path:
    """Write ``result.json`` atomically: a reader sees the whole record or none."""
    record = result_record(produced, result, pending_job)
    return atomic_write_text(out_dir / "result.json", json.dumps(record, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
