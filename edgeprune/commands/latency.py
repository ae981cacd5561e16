"""``edgeprune latency``: profile a target once, then predict pruned models' latency without timing them."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import click

from pipeline.messages import Target
from pipeline.models import MODEL_NAMES
from pipeline.queue import QueueConfig
from pipeline.redact import redact_url
from pipeline.settings import Settings

from .options import (
    SEED_TYPE,
    FiniteFloat,
    check_artifact_store,
    local_target,
    redis_option,
    settings_options,
    target_options,
)
from .queue import producer_queue_options

#: Seconds one architecture may wait in the queue for a consumer to time it (--job-timeout).
JOB_TIMEOUT_S = 600.0
#: Most architectures one profile times: each is a whole-model measurement.
MAX_ARCHS = 1000


@click.group()
def latency() -> None:
    """Latency model of a pruned network on one target: profile it once, predict any architecture.

    `profile` times random pruned architectures of a base model on the target and fits Total_Latency
    (ms) to their layers; `predict` prices an exported model or a schedule with that fit, in
    milliseconds of CPU and without compiling anything (docs/measurement.md, "Latency model").
    """


@latency.command()
@click.option("--model", "model_name", default="resnet56_cifar", show_default=True,
              type=click.Choice(MODEL_NAMES), help="Base network whose pruned architectures are profiled.")
@target_options
@redis_option
@producer_queue_options
@click.option("--job-timeout", default=JOB_TIMEOUT_S, show_default=True, type=FiniteFloat(min=1),
              help="With --redis: seconds each architecture waits for a consumer of the target "
                   "to time it; past it the profile stops with an error (nothing is written).")
@click.option("--archs", default=40, show_default=True, type=click.IntRange(min=2, max=MAX_ARCHS),
              help="Random pruned architectures to time (width, depth and round_to drawn at random); "
                   "the unpruned model is timed besides, every 4th job.")
@click.option("--seed", default=0, show_default=True, type=SEED_TYPE, help="Seed of the random architectures.")
@click.option("--fast", is_flag=True,
              help="Shorter timings (without --redis only): for smoke tests, the fit is noisy.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the latency model (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted model as JSON instead of a summary.")
@settings_options
def profile(settings: Settings, model_name: str, target: Target, redis_url: str | None, prefix: str,
            queue_config: QueueConfig, job_timeout: float, archs: int, seed: int, fast: bool,
            out_path: Path, as_json: bool) -> None:
    """Time the unpruned --model and --archs random pruned ones on the target, fit, write --out.

    Without --redis the models are timed in this process as they are submitted, each one against
    the unpruned model in alternating windows (Relative_Latency), so that a busy machine moves
    both alike; with --redis a consumer of the target times them (start `edgeprune consumer`
    there; the command says what it waits for) and each is normalised by the unpruned
    measurements just before and after it. The default 40 ResNet56 architectures took 7.4
    minutes on a busy 2-core VM (load 10-14).
    """
    from pipeline.files import check_replaceable
    from pipeline.flow import measure_work
    from pipeline.latency import export_unpruned, format_summary, profile_latency, profile_options
    from pipeline.queue import open_queue

    check_replaceable(out_path)
    if redis_url:
        check_artifact_store(queue_config.artifact_store)
    else:
        local_target(target)
    with tempfile.TemporaryDirectory(prefix="edgeprune-profile-") as folder:
        unpruned = None if redis_url else export_unpruned(model_name, Path(folder) / "unpruned.onnx")
        work = measure_work(settings, profile_options(unpruned, fast))
        with open_queue(redis_url, work, target, queue_config, prefix) as queue:
            if redis_url:
                click.echo(f"waiting for a consumer of {_target_text(target)} on {redact_url(redis_url)} "
                           f"(prefix {prefix}), up to {job_timeout:g} s per architecture: start "
                           f"`edgeprune consumer --redis URL --prefix {prefix} --backend {target.backend} "
                           f"--device {target.device} --precision {target.precision}` there", err=True)
            timed = _queue_timing(queue, target, job_timeout, redis_url or "")
            model = profile_latency(model_name, target, settings, timed, archs=archs,
                                    seed=seed, on_progress=lambda line: click.echo(line, err=True),
                                    unpruned_onnx=unpruned)
    model.save(out_path)
    click.echo(model.to_json() if as_json else f"{format_summary(model)}\nwrote {out_path}")


def _queue_timing(queue: Any, target: Target, timeout: float, redis_url: str) -> Callable[[Path], dict]:
    """Time one ONNX file through ``queue`` on ``target`` (latency only); a job nobody answers
    within ``timeout`` seconds, or a failed one, is a one-line UserError naming what was awaited."""
    from pipeline.errors import UserError
    from pipeline.messages import ArtifactRef, Job, ModelFacts

    def timed(onnx_path: Path) -> dict:
        job = queue.submit(Job(job_id=uuid.uuid4().hex, run_id=f"latency-profile-{uuid.uuid4().hex[:8]}",
                               artifact=ArtifactRef(uri="", sha256="", size=0), target=target,
                               model=ModelFacts(), eval_split=""), onnx_path)
        result = queue.wait_result(job.job_id, timeout)
        if result is None:
            raise UserError(f"no consumer of {_target_text(target)} on {redact_url(redis_url)} timed job "
                            f"{job.job_id} within {timeout:g} s: start `edgeprune consumer` for that "
                            "target and queue prefix (or raise --job-timeout), then profile again")
        if not result.ok:
            raise UserError(f"the consumer could not time {onnx_path.name} on {_target_text(target)} "
                            f"({result.error}): fix that, then profile again")
        return result.metrics

    return timed


def _target_text(target: Target) -> str:
    return f"{target.backend}/{target.device}/{target.precision}"


def _explicit_target(ctx: click.Context, model_target: Target, given: Target) -> Target | None:
    """The target asked for on the command line, its unset parts taken from the model; None
    when no target flag was given."""
    names = {"backend": "backend", "target_device": "device", "precision": "precision"}
    explicit = {field: getattr(given, field) for param, field in names.items()
                if ctx.get_parameter_source(param) is not click.core.ParameterSource.DEFAULT}
    if not explicit:
        return None
    return Target(**{**model_target.to_dict(), **explicit})


@latency.command()
@click.argument("model_file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("onnx_path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Predict the model this schedule prunes (one shot, in memory; nothing exported) "
                   "instead of an ONNX file.")
@click.option("--set", "overrides", multiple=True, metavar="INSTANCE.KEY=VALUE",
              help="Rewrite one --schedule value, e.g. --set filter_pruner_70.desired_sparsity=0.5 "
                   "(repeatable).")
@click.option("--model", "model_name", default=None, type=click.Choice(MODEL_NAMES),
              help="Network the --schedule prunes [default: the latency model's]; another than the "
                   "profiled one is refused.")
@target_options
@click.option("--json", "as_json", is_flag=True,
              help="Print an object (Total_Latency, ratio_to_unpruned, ...) instead of one line.")
def predict(model_file: Path, onnx_path: Path | None, schedule_path: Path | None,
            overrides: tuple[str, ...], model_name: str | None, target: Target, as_json: bool) -> None:
    """Predicted Total_Latency (ms) of ONNX_PATH, or of --schedule, by the latency model MODEL_FILE.

    --backend/--device/--precision, when given, must be those MODEL_FILE was profiled on (a
    latency model says nothing about another target).
    """
    from pipeline.errors import UserError
    from pipeline.latency import build_architecture, load_latency_model, shapes_of_module, shapes_of_onnx

    if (onnx_path is None) == (schedule_path is None):
        raise UserError("pass either an ONNX file or --schedule FILE to predict")
    if overrides and schedule_path is None:
        raise UserError("--set rewrites a --schedule: pass --schedule FILE too")
    model = load_latency_model(model_file)
    asked = _explicit_target(click.get_current_context(), model.target, target)
    model.check(asked or model.target, model_name)
    if schedule_path is not None:
        from pipeline.pruning import load_schedule
        from pipeline.schedule import check_round_to

        from .outputs import require_schedule

        require_schedule(schedule_path)
        schedule = load_schedule(schedule_path, overrides)
        check_round_to(schedule, dict(build_architecture(model.model_name).named_parameters()))
        pruned = build_architecture(model.model_name, schedule)
        shapes, source = shapes_of_module(pruned), str(schedule_path)
    else:
        assert onnx_path is not None  # exactly one of the two: checked above
        shapes, source = shapes_of_onnx(onnx_path), str(onnx_path)
        model.check_architecture(shapes, source)
    ms = model.predict(shapes)
    row: dict[str, Any] = {
        "Total_Latency": round(ms, 5), "ratio_to_unpruned": round(ms / model.reference_ms, 5),
        "reference_ms": round(model.reference_ms, 5), "model_name": model.model_name,
        "target": model.target.to_dict(), "source": source, "layers": len(shapes),
        "macs": sum(s.macs for s in shapes), "latency_model": str(model_file),
        "loo_median_error": round(model.fit.loo_median, 5),
    }
    if as_json:
        click.echo(json.dumps(row))
    else:
        click.echo(f"{ms:.4f} ms predicted Total_Latency of {source} ({row['ratio_to_unpruned']:.3f}x "
                   f"the unpruned {model.model_name}, on {model.target.backend}/{model.target.device}/"
                   f"{model.target.precision})")
