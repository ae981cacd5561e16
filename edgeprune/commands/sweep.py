"""``edgeprune sweep``: run a W&B sweep YAML locally on an Optuna study."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pipeline.errors import UserError
from pipeline.flow import ACCURACY_NOTE, RunConfig
from pipeline.messages import Target
from pipeline.models import MODEL_NAMES
from pipeline.queue import QueueConfig
from pipeline.redact import redact_url
from pipeline.settings import Settings

from .options import (
    LR_TYPE,
    MAX_IMAGES,
    MAX_STEPS,
    SEED_TYPE,
    FiniteFloat,
    check_artifact_store,
    epochs_type,
    latency_model_option,
    local_target,
    measure_options,
    quiet_wait_option,
    recovery_options,
    redis_option,
    settings_options,
    target_options,
)
from .outputs import check_run_inputs
from .queue import producer_queue_options

DEFAULT_TRIALS = 20
#: Bounds of --trials and --workers: a typo must not fork a million processes.
MAX_TRIALS = 1_000_000
MAX_WORKERS = 256


@click.command()
@click.argument("sweep_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--trials", "n_trials", type=click.IntRange(1, MAX_TRIALS), default=None,
              help=f"Trials the study should hold when done, across all workers [default: the "
                   f"sweep's run_cap, the grid's size for method: grid, else {DEFAULT_TRIALS}].")
@click.option("--storage", default=None,
              help="Study storage: a database URL (postgresql://postgres@127.0.0.1:5432/test) that "
                   "producers on several machines share, or a journal file [default: "
                   "<out>/study.journal]. An existing study is resumed.")
@click.option("--study", "study_name", default=None,
              help="Study name [default: the sweep's name, else the file name].")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="Worker processes sharing the study on this machine.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the study journal and one sub-folder per trial "
                   "[default: runs/sweeps/<study>].")
@click.option("--schedule", "schedule_path", type=click.Path(path_type=Path), default=None,
              help="Base compression schedule [default: the --schedule in the sweep's command].")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None,
              help="Network to prune [default: the --model in the sweep's command, else resnet56_cifar].")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Pretrained weights [default: <models-dir>/resnet<depth>-*.th].")
@click.option("--epochs", type=epochs_type(), default=0, show_default=True,
              help="Retraining epochs when the sweep does not search or fix 'epochs'.")
@click.option("--lr", type=LR_TYPE, default=0.01, show_default=True,
              help="Retraining learning rate when the sweep does not set 'lr'.")
@click.option("--max-steps", "max_steps_per_epoch", type=click.IntRange(1, MAX_STEPS), default=None,
              help="Cap retraining steps per epoch (quick sweeps and tests).")
@click.option("--subset", type=click.IntRange(10, MAX_IMAGES), default=None,
              help="Retrain on only the first N training images.")
@click.option("--eval-split", default="val", show_default=True, type=click.Choice(["val", "test"]),
              help="Split the trials' accuracy is measured on: val while searching keeps the test "
                   "split for the final report.")
@click.option("--eval-limit", "eval_subset", type=click.IntRange(0, MAX_IMAGES), default=0, show_default=True,
              help="Evaluate on the first N images of that split only (0: all).")
@target_options
@recovery_options
@click.option("--timeout", type=FiniteFloat(min=1), default=3600.0, show_default=True,
              help="Seconds a trial waits for its measurement before it is recorded as failed.")
@click.option("--fast-measure", is_flag=True,
              help="Short measurements in this process's consumer (noisy figures: smoke runs only).")
@quiet_wait_option
@latency_model_option
@click.option("--seed", type=SEED_TYPE, default=0, show_default=True,
              help="Sampler seed (worker i uses seed+i; a resumed study mixes in its trial count, so it "
                   "draws new proposals) and the runs' data seed.")
@click.option("--tracker", type=click.Choice(["none", "wandb"]), default="none", show_default=True,
              help="Also log every trial as a W&B run (honours WANDB_MODE=offline).")
@click.option("--no-baselines", "no_baselines", is_flag=True,
              help="Do not measure the unpruned model (and, for resnet56_cifar, the hand-picked "
                   "schedule) before the first trial. By default they are measured once per base "
                   "model, checkpoint and target, without retraining, through the trials' queue, "
                   "and stored in the study, so `edgeprune report` shows the speed-up over the "
                   "unpruned model; a resumed sweep reuses them.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the trial records (TrialRecord JSON list) instead of the summary.")
@redis_option
@producer_queue_options
@settings_options
def sweep(settings: Settings, sweep_file: Path, n_trials: int | None, storage: str | None,
          study_name: str | None, workers: int, out_dir: Path | None, schedule_path: Path | None,
          model: str | None, target: Target, timeout: float, fast_measure: bool, quiet_wait: float,
          seed: int, tracker: str, no_baselines: bool, as_json: bool, redis_url: str | None, prefix: str,
          queue_config: QueueConfig, latency_models: tuple[Path, ...], **options: Any) -> None:
    """Run SWEEP_FILE (a W&B sweep YAML, e.g. sweeps/01_rapid_latency.yaml) on a local Optuna study.

    method bayes uses a Gaussian process (Optuna's GPSampler after 3 random trials, never trying a
    model sparser than one that missed the accuracy floor, nor one that cannot beat a feasible
    trial, and weighting feasibility twice; multi-objective and constrained when
    the sweep's edgeprune extension asks; `sampler: tpe` there for TPE), random and grid as
    named. Prints a line (stderr) as each stage of a trial ends, one table row per finished trial
(parameter names shortened to fit the terminal, with a legend) and the best so far (or the
Pareto front), then wall time beside compute time. Without
    --redis, each worker measures its trials' models itself, as it submits them.
    """
    from optuna import logging as optuna_logging

    from pipeline.latency import load_latency_model
    from pipeline.report.analysis import describe
    from pipeline.search.config import STUDY_NAME_FIX, load_sweep, study_name_problem
    from pipeline.search.engine import best_trials, study_name_of
    from pipeline.search.loop import LoopSpec, run_sweep
    from pipeline.search.mapping import check_mapping
    from pipeline.search.progress import best_line, params_text, time_summary
    from pipeline.search.references import load_references, speedup_text
    from pipeline.search.space import SearchSpace
    from pipeline.search.storage import check_storage

    optuna_logging.set_verbosity(optuna_logging.WARNING)
    if study_name is not None and study_name_problem(study_name):
        raise UserError(f"--study {study_name_problem(study_name)}: {STUDY_NAME_FIX}")
    if storage is not None:
        check_storage(storage)
    if redis_url:
        check_artifact_store(queue_config.artifact_store)
    else:
        local_target(target)
    config = load_sweep(sweep_file)
    schedule = schedule_path or config.command_option("--schedule")
    if schedule is None:
        raise UserError(f"{sweep_file}: no base schedule: pass --schedule FILE or put "
                        "--schedule FILE in the sweep's command")
    if not Path(schedule).is_file():
        raise UserError(f"schedule {schedule} not found: pass --schedule FILE (see schedules/)")
    check_mapping(config.parameters, Path(schedule))
    name = study_name or study_name_of(config)
    out_dir = out_dir or Path("runs") / "sweeps" / name
    if n_trials is None:
        n_trials = SearchSpace(config).grid_size() if config.method == "grid" else \
            (config.run_cap or DEFAULT_TRIALS)
    base = RunConfig(schedule=Path(schedule), model=model or config.command_option("--model")
                     or "resnet56_cifar", target=target, seed=seed, **options)
    # Before the study folder, the references or any trial: one line for a bad file.
    check_run_inputs(base, settings)
    for path in latency_models:
        load_latency_model(path)
    spec = LoopSpec(sweep=str(sweep_file), base=base, settings=settings, out_dir=str(out_dir),
                    n_trials=n_trials, storage=storage, study_name=name, redis_url=redis_url,
                    queue_prefix=prefix, queue_config=queue_config, timeout=timeout, seed=seed,
                    tracker=tracker, progress=not as_json,
                    measure_options=measure_options(fast_measure, quiet_wait),
                    latency_models=tuple(map(str, latency_models)),
                    baselines=not no_baselines)
    started, started_at = time.monotonic(), time.time()
    records = run_sweep(spec, workers)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    this_run = [r for r in records if r.started_at >= started_at]
    click.echo(f"{len(records)} trials in study {name} ({redact_url(str(storage or out_dir))}); "
               f"this command: {time_summary(this_run, time.monotonic() - started)} "
               "(compute: pruning, retraining, export and measurement, summed over workers)")
    click.echo(best_line(config, records, so_far=False))
    references = load_references(storage or out_dir, name)
    for record in best_trials(config, records):
        speedup = speedup_text(references, record.metrics, config.ranked_metrics)
        click.echo(f"  trial {record.number}: {describe(record)}{'; ' + speedup if speedup else ''}; "
                   f"params: {params_text(record.params)}")
    click.echo(f"Note: {ACCURACY_NOTE}. Report: edgeprune report {out_dir}")
