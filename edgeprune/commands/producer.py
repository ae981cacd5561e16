"""``edgeprune producer``: one trial (prune, retrain, export) whose model a consumer measures.

``wandb agent`` runs this command with the sweep's parameters appended as
``--<instance>_<key>=<value>``; they are mapped onto the schedule by ``pipeline.search.mapping``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import click

from pipeline.errors import UserError
from pipeline.flow import RunConfig
from pipeline.messages import Target
from pipeline.progress import StageLines
from pipeline.queue import QueueConfig
from pipeline.redact import redact_url
from pipeline.schedule import parse_overrides
from pipeline.settings import Settings
from pipeline.status import TrialStatus

from .options import FiniteFloat, latency_model_option, redis_option, run_config_options, settings_options
from .outputs import check_run_inputs, require_schedule, staged_output
from .queue import producer_queue_options

#: Exit statuses besides 0 (trial finished) and 2 (user error).
EXIT_JOB_FAILED = 1
EXIT_TIMEOUT = 3


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@run_config_options
@click.option("--timeout", default=3600.0, show_default=True, type=FiniteFloat(min=0),
              help="Seconds to wait for the consumer's result; past it the job stays queued (its "
                   "result is still stored when it comes) and the command exits with status 3.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder for result.json, schedule.yaml and model.onnx "
                   "[default: runs/<time>-<host>-<pid>], unique across replicas sharing runs/.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json instead of the table.")
@click.option("--fast", is_flag=True,
              help="Without --redis: short measurements in the in-process consumer (smoke tests; "
                   "figures are noisy). With --redis the consumer decides.")
@click.option("--tracker", type=click.Choice(["auto", "none", "wandb"]), default=None,
              help="Experiment tracking of the trial: wandb logs parameters, pre-retraining figures "
                   "and the consumer's metrics to the run summary; auto (default) uses wandb exactly "
                   "when `wandb agent` launched this command [env EDGEPRUNE_TRACKER].")
@click.option("--loop", is_flag=True,
              help="Instead of one trial from the arguments, keep taking trials from --sweep's study "
                   "until it holds --trials (several producers on several machines share one study "
                   "through --storage).")
@click.option("--sweep", "sweep_path", type=click.Path(path_type=Path), default=None,
              help="With --loop: the sweep YAML whose study to serve.")
@click.option("--storage", default=None,
              help="With --loop: the study's storage URL, e.g. postgresql://user@host/db "
                   "[default: a file under --out].")
@click.option("--study", "study_name", default=None,
              help="With --loop: the study name [default: from the sweep file].")
@click.option("--trials", "n_trials", default=10, show_default=True, type=click.IntRange(min=1),
              help="With --loop: stop once the study holds this many trials.")
@latency_model_option
@click.option("--latency-limit", type=FiniteFloat(min=0, min_open=True), default=None,
              help="With --latency-model: skip retraining (status gated) when the predicted "
                   "Total_Latency exceeds this many ms [default: never skip, only record the "
                   "prediction]. With --loop the sweep's gate decides.")
@redis_option
@producer_queue_options
@settings_options
@click.pass_context
def producer(ctx: click.Context, settings: Settings, schedule_path: Path, overrides: tuple[str, ...],
             target: Target, timeout: float, out_dir: Path | None, as_json: bool, fast: bool,
             redis_url: str | None, prefix: str, queue_config: QueueConfig, tracker: str | None,
             loop: bool, sweep_path: Path | None, storage: str | None, study_name: str | None,
             n_trials: int, latency_models: tuple[Path, ...], latency_limit: float | None,
             **options: Any) -> None:
    """Prune, retrain and export one model, queue it for a consumer and wait for its figures.

    Extra --<instance>_<key>=<value> arguments (as `wandb agent` passes sweep parameters) rewrite
    the schedule; --epochs/--lr/--precision may come that way too. Without --redis the job is
    measured in this process as it is submitted. Exit status: 0 the trial finished (see its
    status), 1 the job failed and was dead-lettered, 3 no result within --timeout, 2 user error.
    """
    from producer.agent import run_producer
    from producer.params import apply_sweep_params, parse_extra_args

    from .run import format_record

    require_schedule(schedule_path)
    settings = settings.replace(tracker=tracker)
    out_dir = out_dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}-{os.getpid()}"
    measure_options = None
    if fast:
        from pipeline.measure import MeasureOptions

        measure_options = MeasureOptions.fast()
    edits = parse_overrides(overrides)
    if loop:
        _serve_study(settings, RunConfig(schedule=schedule_path, overrides=edits, target=target,
                                         **options), sweep_path, storage, study_name, n_trials, out_dir,
                     redis_url, prefix, queue_config, timeout, measure_options, latency_models)
        return
    sweep_params = parse_extra_args(ctx.args)
    all_overrides = edits
    params: dict[str, Any] = {}
    if sweep_params:
        run_settings: dict[str, Any] = {}
        mapped, params = apply_sweep_params(sweep_params, schedule_path, run_settings)
        all_overrides += mapped
        if "precision" in run_settings:
            target.precision = run_settings.pop("precision")
        options.update(run_settings)
    config = RunConfig(schedule=schedule_path, overrides=all_overrides, target=target, params=params,
                       **options)
    # Built under a temporary name: --out appears only once result.json is written, so an error
    # (exit 2) leaves no model.onnx or schedule.yaml without their result.
    check_run_inputs(config, settings)
    lines = StageLines(epochs=config.epochs)
    click.echo(f"producer: {config.model} with {schedule_path}, {config.epochs} epoch(s), jobs to "
               f"{redact_url(redis_url) if redis_url else 'this process'} for "
               f"{target.backend} {target.device} {target.precision}", err=True)
    with staged_output(out_dir) as staging:
        outcome = run_producer(config, settings, staging, timeout, redis_url=redis_url, prefix=prefix,
                               queue_config=queue_config, tracker=_tracker(settings, schedule_path),
                               measure_options=measure_options, on_stage=lines.stage,
                               on_epoch=lines.on_epoch(),
                               gate=_predicting_gate(latency_models, latency_limit, config))
        record = json.loads(outcome.result_path.read_text())
    click.echo(json.dumps(record, indent=2) if as_json else format_record(record, out_dir))
    if outcome.timed_out:
        click.echo(f"no result for job {outcome.job_id} within {timeout:.0f} s: it stays queued and "
                   "its result is stored when it comes (edgeprune queue status)", err=True)
        ctx.exit(EXIT_TIMEOUT)
    if outcome.status == TrialStatus.FAILED:
        click.echo(f"job {outcome.job_id} failed: {outcome.reason}", err=True)
        ctx.exit(EXIT_JOB_FAILED)


def _predicting_gate(paths: tuple[Path, ...], limit: float | None, config: RunConfig) -> Any:
    """The gate on the prediction of the model in ``paths`` of the run's target (checked against
    its model), or None."""
    if not paths:
        if limit is not None:
            raise UserError("--latency-limit needs --latency-model FILE: the limit is judged on its prediction")
        return None
    from pipeline.flow import PREDICTED_METRIC
    from pipeline.latency import LatencyModels, load_latency_model
    from pipeline.search.config import GateOptions
    from pipeline.search.gate import PredictingGate

    model = LatencyModels(tuple(load_latency_model(p) for p in paths)).require(config.target, config.model)
    model.check(config.target, config.model)  # of this base network, too
    return PredictingGate(GateOptions(PREDICTED_METRIC, limit), config.target, model)


def _tracker(settings: Settings, schedule_path: Path) -> Any:
    """The trial's tracker: W&B when asked (or under `wandb agent`), else one that records nothing."""
    from pipeline.search.tracking import make_tracker

    return make_tracker(settings.tracker_kind(), job_type=schedule_path.stem)


def _serve_study(settings: Settings, base: RunConfig, sweep_path: Path | None, storage: str | None,
                 study_name: str | None, n_trials: int, out_dir: Path, redis_url: str | None,
                 prefix: str, queue_config: QueueConfig, timeout: float, measure_options: Any,
                 latency_models: tuple[Path, ...]) -> None:
    """``--loop``: run trials of the sweep's shared study until it holds ``n_trials``."""
    from pipeline.search.loop import LoopSpec, run_loop

    if sweep_path is None or not sweep_path.is_file():
        raise UserError("--loop needs --sweep FILE: the sweep YAML whose study this producer serves")
    records = run_loop(LoopSpec(sweep=str(sweep_path), base=base, settings=settings, out_dir=str(out_dir),
                                n_trials=n_trials, storage=storage, study_name=study_name,
                                redis_url=redis_url, queue_prefix=prefix, queue_config=queue_config,
                                timeout=timeout, tracker=settings.tracker_kind(),
                                measure_options=measure_options,
                                latency_models=tuple(map(str, latency_models))))
    click.echo(f"this producer ran {len(records)} trial(s) of the study; see edgeprune report {out_dir}")
