"""Click options shared by several commands, so each flag is spelled and explained once."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlsplit

import click

from pipeline.errors import UserError, shown
from pipeline.settings import ENV_VARS, Settings, check_redis_url

if TYPE_CHECKING:
    from pipeline.measure import MeasureOptions
    from pipeline.messages import Target

#: Most retraining epochs an option takes: far above any real run (a CIFAR ResNet converges in
#: a few hundred), low enough that epoch arithmetic and schedules stay small numbers.
MAX_EPOCHS = 10_000
#: Bounds of the count options: far above any real value, low enough that no allocation or
#: loop is sized by a typo (a 10**25 batch size or subset hung `run` before these).
MAX_IMAGES = 100_000_000
MAX_BATCH = 65_536
MAX_STEPS = 100_000_000
MAX_THREADS = 4096
#: Retraining learning rate: SGD diverges far below the bound; above it is a typo.
MAX_LR = 100.0
#: numpy and torch seeds are unsigned 32-bit.
SEED_TYPE = click.IntRange(0, 2**32 - 1)
#: OpenVINO device families, and the virtual devices that take a list of them after a colon.
OPENVINO_DEVICES = ("CPU", "GPU", "NPU")
OPENVINO_VIRTUAL_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")


class FiniteFloat(click.FloatRange):
    """A float option's type: a real number in the range; nan and inf are refused (nan passes
    every range comparison, inf makes waits and timings endless). Every float option uses it."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number: give a plain number such as 0.5", param, ctx)
        return number


#: The type of every --lr option.
LR_TYPE = FiniteFloat(min=0, max=MAX_LR, min_open=True)


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --shared/--data/--models-dir/--cache-dir/--torch-device/--threads; pass ``settings``.

    ``--device`` is left free for the inference target (OpenVINO's CPU/GPU/NPU), see ``target_options``.
    """
    options = [
        click.option("--shared", "shared_dir", type=click.Path(path_type=Path), default=None,
                     help=f"Folder holding data/ and models/ [env {ENV_VARS['shared_dir']}; "
                          "default ../shared beside the repository when present]."),
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     help="Data set: CIFAR-10/100 binary version (cifar-10-batches-bin / cifar-100-binary "
                          "folder or .tar.gz), cifar-10-batches-py folder, cifar-10-python.tar.gz, or an "
                          "image-folder tree train/<class>/*, test/<class>/* (folder or .tar.gz) "
                          f"[env {ENV_VARS['data']}; default <shared>/data/cifar-10-binary.tar.gz]."),
        click.option("--models-dir", type=click.Path(path_type=Path), default=None,
                     help=f"Folder of pretrained checkpoints [env {ENV_VARS['models_dir']}; "
                          "default <shared>/models]."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help=f"Cache of decoded data sets and measurements [env {ENV_VARS['cache_dir']}; "
                          "default ~/.cache/edgeprune]."),
        click.option("--torch-device", "device", default=None,
                     help=f"torch device for pruning and retraining: auto, cpu, cuda, cuda:1 "
                          f"[env {ENV_VARS['device']}; default auto]."),
        click.option("--threads", type=click.IntRange(0, MAX_THREADS), default=None,
                     help=f"CPU threads for torch, 0 for torch's default [env {ENV_VARS['threads']}]."),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        keys = ("shared_dir", "data", "models_dir", "cache_dir", "device", "threads")
        overrides = {k: kwargs.pop(k) for k in keys}
        kwargs["settings"] = Settings.load(**overrides)
        return func(**kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def epochs_type() -> click.IntRange:
    """The type of every --epochs option: 0 to ``MAX_EPOCHS``."""
    return click.IntRange(min=0, max=MAX_EPOCHS)


def redis_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --redis URL (env EDGEPRUNE_REDIS), checked as it is parsed (``check_redis_url``);
    absent means the in-process queue."""
    return click.option(
        "--redis", "redis_url", default=None, envvar=ENV_VARS["redis_url"], show_envvar=True,
        callback=lambda ctx, param, value: check_redis_url(value) if value else value,
        help="Redis URL (redis://[:password@]host:port/db or rediss:// for TLS). Without it the "
             "models are measured in this process, as they are submitted: no server needed.",
    )(func)


def latency_model_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --latency-model FILE, repeatable (``pipeline.latency`` LatencyModel JSONs), passed as
    the tuple ``latency_models``."""
    return click.option(
        "--latency-model", "latency_models", type=click.Path(path_type=Path, exists=True, dir_okay=False),
        multiple=True,
        help="Latency model JSON fitted for this target and base model: the latency gate (and "
             "rapid trials) predict Total_Latency from the pruned model instead of exporting and "
             "measuring it; models that are retrained are still measured, and the measured figure "
             "ranks them (the prediction is kept as Total_Latency_predicted). Give it once per "
             "precision the trials run at (e.g. an fp32 and an int8 profile for a sweep that "
             "searches precision): each trial is priced by the model of its own precision. Stored "
             "in the study on first use: other workers of the study reuse them without the files.",
    )(func)


def quiet_wait_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --quiet-wait S (``MeasureOptions.quiet_wait_s``), passed as ``quiet_wait``."""
    return click.option(
        "--quiet-wait", "quiet_wait", default=0.0, show_default=True, type=FiniteFloat(min=0),
        help="Seconds each latency measurement may wait, before timing, for a shared machine's "
             "slow period to end (a reference kernel back within 15% of its best time); 0 times "
             "at once. The slowdown at the start is recorded as machine_slowdown either way.",
    )(func)


def measure_options(fast: bool, quiet_wait: float) -> MeasureOptions:
    """The consumer's MeasureOptions from --fast (short, noisy timings) and --quiet-wait."""
    from pipeline.measure import MeasureOptions  # lazily: --help of every command stays light

    return (MeasureOptions.fast if fast else MeasureOptions)(quiet_wait_s=quiet_wait)


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --backend/--device/--precision and pass them as ``target`` (a pipeline Target)."""
    options = [
        click.option("--backend", default="openvino", show_default=True,
                     type=click.Choice(["openvino", "onnxruntime"]),
                     help="Inference engine that runs the deployed model."),
        click.option("--device", "target_device", default="CPU", show_default=True,
                     help="Engine device: CPU, GPU or NPU for OpenVINO; CPU for ONNX Runtime."),
        click.option("--precision", default="fp32", show_default=True,
                     type=click.Choice(["fp32", "bf16", "fp16", "int8", "auto"]),
                     help="Inference precision; int8 quantizes with NNCF first; auto keeps the "
                          "device default (bf16 on CPUs with AMX/AVX512-BF16). The precision that "
                          "actually ran is recorded."),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from pipeline.messages import Target

        kwargs["target"] = check_target_names(Target(backend=kwargs.pop("backend"),
                                                     device=kwargs.pop("target_device"),
                                                     precision=kwargs.pop("precision")))
        return func(**kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def check_target_names(target: Target) -> Target:
    """``target`` if its device can be a device of its backend anywhere; else a one-line UserError.

    Only the spelling is checked: a producer names the device of a consumer on another machine.
    Where this process measures (``run``, a sweep without --redis), ``local_target`` also checks
    that the device is on this machine.
    """
    device = target.device
    if target.backend == "onnxruntime":
        if device != "CPU":
            raise UserError(f"ONNX Runtime device {shown(device)} is not supported: use --device CPU "
                            "or --backend openvino")
        return target
    fix = (f"use one of {', '.join(OPENVINO_DEVICES)} (GPU.1: a second GPU) or a virtual device "
           f"({', '.join(OPENVINO_VIRTUAL_DEVICES)}) with a list, e.g. HETERO:GPU,CPU")
    if not device:
        raise UserError(f"OpenVINO device '' is empty: {fix}")
    family, colon, listed = device.partition(":")
    if colon and family not in OPENVINO_VIRTUAL_DEVICES:
        raise UserError(f"OpenVINO device {shown(device)}: {shown(family)} takes no device list: {fix}")
    unknown = [name for name in (listed.split(",") if colon else [device]) if not _device_name(name)]
    if unknown:
        raise UserError(f"OpenVINO device {shown(device)} names unknown device(s) "
                        f"{', '.join(map(shown, unknown))}: {fix}")
    return target


def _device_name(name: str) -> bool:
    """Whether ``name`` is a device family, optionally with an index (``GPU.1``)."""
    family, dot, index = name.partition(".")
    return family in OPENVINO_DEVICES and (not dot or index.isdigit())


def check_artifact_store(store: str) -> str:
    """``store`` if a producer can put artifacts there: ``redis``, or ``file:///dir`` whose
    nearest existing ancestor is a writable folder; else a one-line UserError, so that a sweep or
    profile fails before any pruning instead of at its first submission. (The --artifacts
    option's callback can use it as is.)"""
    fix = "use --artifacts redis or file:///shared/dir (an absolute folder path)"
    if store == "redis":
        return store
    parts = urlsplit(store)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise UserError(f"artifact store {shown(store)} is not redis or a local file:/// folder: {fix}")
    folder = Path(unquote(parts.path))
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    if not existing.is_dir():
        raise UserError(f"artifact store {shown(store)}: {existing} is not a folder: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"artifact store {shown(store)}: {existing} is not writable: {fix}")
    return store


def local_target(target: Target) -> Target:
    """``target`` if this machine can measure on it (the engine is asked); else a one-line
    UserError. For commands that measure in this process, before any slow work."""
    from pipeline.measure import check_target

    check_target(target)
    return target


def recovery_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --bn-recalibrate, --raw-eval, --kd-teacher, --kd-teacher-model, --kd-weight, --kd-temperature,
    --lr-anneal, passed under ``pipeline.flow.RunConfig``'s field names (adaptive BN, knowledge
    distillation and the retraining's lr annealing)."""
    from pipeline.batchnorm import DEFAULT_RECALIBRATION_IMAGES
    from pipeline.models import MODEL_NAMES
    from pipeline.training import LR_ANNEALS

    options = [
        click.option("--bn-recalibrate", default=DEFAULT_RECALIBRATION_IMAGES, show_default=True,
                     type=click.IntRange(0, MAX_IMAGES),
                     help="Re-estimate BatchNorm statistics on N train images after pruning, before "
                          "the pruned model is evaluated, gated and retrained (adaptive BN; weights "
                          "unchanged); 0 turns it off. result.json keeps Top1_before_raw too, "
                          "unless --no-raw-eval."),
        click.option("--raw-eval/--no-raw-eval", "raw_eval", default=True, show_default=True,
                     help="With adaptive BN, also evaluate the pruned model before it "
                          "(Top1_before_raw; one more validation pass). `run` defaults to --no-raw-eval."),
        click.option("--kd-teacher", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Distillation teacher checkpoint (an unpruned --kd-teacher-model) [default "
                          "with --kd-weight: that model's pretrained weights fine-tuned on this data "
                          "with this run's budget, cached in the cache folder]."),
        click.option("--kd-teacher-model", default="resnet56_cifar", show_default=True,
                     type=click.Choice(MODEL_NAMES),
                     help="Network of the distillation teacher, whatever --model is (a ResNet32 "
                          "student distils from the ResNet56 teacher)."),
        click.option("--kd-weight", default=0.0, show_default=True, type=FiniteFloat(0, 1),
                     help="Weight w of the distillation term: (1-w)*CE + w*T^2*KL(teacher||student); "
                          "0 retrains without distillation."),
        click.option("--kd-temperature", default=4.0, show_default=True,
                     type=FiniteFloat(min=0, min_open=True),
                     help="Distillation temperature T (softens both networks' outputs)."),
        click.option("--lr-anneal", default="none", show_default=True, type=click.Choice(LR_ANNEALS),
                     help="cosine: multiply the retraining lr, step by step, by a half cosine from 1 "
                          "to 0 over all its steps (the schedule's lr_schedulers step only at epoch "
                          "ends, so a one- or two-epoch fine-tuning otherwise never decays); none: "
                          "the lr the schedule sets."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the flags of one prune-retrain-export run: the schedule and its rewrites, the model,
    retraining, evaluation and the target. They arrive as ``schedule_path``, ``overrides``,
    ``target`` and keyword arguments named like ``pipeline.flow.RunConfig``'s fields."""
    from pipeline.models import MODEL_NAMES

    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--schedule", "schedule_path", required=True, type=click.Path(path_type=Path),
                     help="Distiller-format compression schedule (YAML), e.g. "
                          "schedules/resnet56_filter_rank.yaml."),
        click.option("--set", "overrides", multiple=True, metavar="INSTANCE.KEY=VALUE",
                     help="Rewrite one schedule value, e.g. --set filter_pruner_70.desired_sparsity=0.5 "
                          "(repeatable)."),
        click.option("--model", default="resnet56_cifar", show_default=True, type=click.Choice(MODEL_NAMES),
                     help="Network to prune (Distiller's names)."),
        click.option("--shortcut", default="A", show_default=True, type=click.Choice(["A", "B"]),
                     help="ResNet shortcut: A zero-pads (the pretrained checkpoints), B uses 1x1 conv + BN."),
        click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
                     help="Pretrained weights [default: <models-dir>/resnet<depth>-*.th]."),
        click.option("--epochs", default=0, show_default=True, type=epochs_type(),
                     help="Retraining epochs after pruning; 0 skips retraining."),
        click.option("--lr", default=0.01, show_default=True, type=LR_TYPE,
                     help="Initial retraining learning rate (SGD, momentum 0.9); the schedule's "
                          "lr_schedulers then apply."),
        click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1, MAX_BATCH),
                     help="Retraining batch size."),
        click.option("--max-steps", "max_steps_per_epoch", default=None, type=click.IntRange(1, MAX_STEPS),
                     help="Cap retraining steps per epoch (quick trials and tests)."),
        click.option("--subset", default=None, type=click.IntRange(10, MAX_IMAGES),
                     help="Retrain on only the first N training images (stratified)."),
        click.option("--val-fraction", default=0.1, show_default=True, type=FiniteFloat(0.01, 0.5),
                     help="Share of the training images held out for validation (collapse check, "
                          "early stopping)."),
        click.option("--eval-split", default="test", show_default=True, type=click.Choice(["test", "val"]),
                     help="Split for the final PyTorch and deployed accuracies (val for searches)."),
        click.option("--eval-limit", "eval_subset", default=0, show_default=True, type=click.IntRange(0, MAX_IMAGES),
                     help="Evaluate on the first N images of that split only (0: all; the splits "
                          "are class-interleaved, so N images hold N/10 of each class)."),
        click.option("--val-limit", "val_subset", default=0, show_default=True, type=click.IntRange(0, MAX_IMAGES),
                     help="Evaluate the pruned model (collapse check, Top1_before) on the first N "
                          "validation images only (0: all); retraining validates on all of them."),
        target_options,
        click.option("--torch-eval", is_flag=True,
                     help="Also evaluate the PyTorch model on --eval-split when it was not retrained "
                          "(the deployed model is always evaluated there; after retraining PyTorch is too)."),
        click.option("--retrain-collapsed", is_flag=True,
                     help="Retrain even when pruning left a network that predicts one class."),
        click.option("--seed", default=0, show_default=True, type=SEED_TYPE,
                     help="Seed for splits, shuffling and initialisation."),
        recovery_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func
