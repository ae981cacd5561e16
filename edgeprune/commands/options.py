"""Click options shared by several commands, so each flag is spelled and explained once."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from pipeline.settings import ENV_VARS, Settings

if TYPE_CHECKING:
    from pipeline.measure import MeasureOptions


class FiniteFloat(click.FloatRange):
    """A float option's type: a real number in the range; nan and inf are refused (nan passes
    every range comparison, inf makes waits and timings endless). Every float option uses it."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number: give a plain number such as 0.5", param, ctx)
        return number


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
        click.option("--threads", type=click.IntRange(min=0), default=None,
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


def redis_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --redis URL (env EDGEPRUNE_REDIS); absent means the in-process queue."""
    return click.option(
        "--redis", "redis_url", default=None, envvar=ENV_VARS["redis_url"], show_envvar=True,
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

        kwargs["target"] = Target(backend=kwargs.pop("backend"), device=kwargs.pop("target_device"),
                                  precision=kwargs.pop("precision"))
        return func(**kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def recovery_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --bn-recalibrate, --raw-eval, --kd-teacher, --kd-teacher-model, --kd-weight, --kd-temperature,
    --lr-anneal, passed under ``pipeline.flow.RunConfig``'s field names (adaptive BN, knowledge
    distillation and the retraining's lr annealing)."""
    from pipeline.batchnorm import DEFAULT_RECALIBRATION_IMAGES
    from pipeline.models import MODEL_NAMES
    from pipeline.training import LR_ANNEALS

    options = [
        click.option("--bn-recalibrate", default=DEFAULT_RECALIBRATION_IMAGES, show_default=True,
                     type=click.IntRange(min=0),
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

    options = [
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
        click.option("--epochs", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Retraining epochs after pruning; 0 skips retraining."),
        click.option("--lr", default=0.01, show_default=True, type=FiniteFloat(min=0, min_open=True),
                     help="Initial retraining learning rate (SGD, momentum 0.9); the schedule's "
                          "lr_schedulers then apply."),
        click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1),
                     help="Retraining batch size."),
        click.option("--max-steps", "max_steps_per_epoch", default=None, type=click.IntRange(min=1),
                     help="Cap retraining steps per epoch (quick trials and tests)."),
        click.option("--subset", default=None, type=click.IntRange(min=10),
                     help="Retrain on only the first N training images (stratified)."),
        click.option("--val-fraction", default=0.1, show_default=True, type=FiniteFloat(0.01, 0.5),
                     help="Share of the training images held out for validation (collapse check, "
                          "early stopping)."),
        click.option("--eval-split", default="test", show_default=True, type=click.Choice(["test", "val"]),
                     help="Split for the final PyTorch and deployed accuracies (val for searches)."),
        click.option("--eval-limit", "eval_subset", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Evaluate on the first N images of that split only (0: all; the splits "
                          "are class-interleaved, so N images hold N/10 of each class)."),
        click.option("--val-limit", "val_subset", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Evaluate the pruned model (collapse check, Top1_before) on the first N "
                          "validation images only (0: all); retraining validates on all of them."),
        target_options,
        click.option("--torch-eval", is_flag=True,
                     help="Also evaluate the PyTorch model on --eval-split when it was not retrained "
                          "(the deployed model is always evaluated there; after retraining PyTorch is too)."),
        click.option("--retrain-collapsed", is_flag=True,
                     help="Retrain even when pruning left a network that predicts one class."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Seed for splits, shuffling and initialisation."),
        recovery_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func
