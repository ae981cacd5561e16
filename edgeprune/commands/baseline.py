"""``edgeprune baseline``: the seed's baseline table (unpruned vs hand-picked) measured here."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.files import require_new_folder
from pipeline.messages import Target
from pipeline.models import MODEL_NAMES
from pipeline.settings import Settings

from .options import (
    LR_TYPE,
    MAX_BATCH,
    MAX_IMAGES,
    MAX_STEPS,
    epochs_type,
    local_target,
    recovery_options,
    settings_options,
    target_options,
)
from .outputs import require_schedule, staged_output


@click.command()
@click.option("--model", default="resnet56_cifar", show_default=True, type=click.Choice(MODEL_NAMES),
              help="Network whose pretrained checkpoint is the unpruned baseline.")
@click.option("--schedule", "schedule_path", default=Path("schedules/resnet56_filter_rank.yaml"),
              show_default=True, type=click.Path(path_type=Path),
              help="The hand-picked Distiller schedule to compare against.")
@click.option("--epochs", default=0, show_default=True, type=epochs_type(),
              help="Retraining epochs: with N > 0 the table adds the hand-picked model retrained "
                   "for N epochs and the unpruned model fine-tuned for the same N.")
@click.option("--lr", default=0.01, show_default=True, type=LR_TYPE,
              help="Retraining learning rate (SGD, momentum 0.9).")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1, MAX_BATCH),
              help="Retraining batch size.")
@click.option("--max-steps", default=None, type=click.IntRange(1, MAX_STEPS),
              help="Cap retraining steps per epoch (quick checks and tests; figures then are not "
                   "a full epoch's).")
@click.option("--subset", default=None, type=click.IntRange(10, MAX_IMAGES),
              help="Retrain on only the first N training images (quick checks).")
@click.option("--eval-limit", default=0, show_default=True, type=click.IntRange(0, MAX_IMAGES),
              help="Evaluate accuracy on the first N test images only (0: all 10,000).")
@target_options
@recovery_options
@click.option("--quick", is_flag=True,
              help="Short measurements (a few hundred timed inferences): noisy figures, for "
                   "smoke tests only.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for baseline.md, baseline.json and one run folder per row "
                   "[default: runs/baseline-<time>].")
@click.option("--json", "as_json", is_flag=True, help="Print baseline.json instead of the table.")
@settings_options
def baseline(settings: Settings, model: str, schedule_path: Path, epochs: int, lr: float,
             batch_size: int, max_steps: int | None, subset: int | None, eval_limit: int,
             target: Target, quick: bool, out_dir: Path | None, as_json: bool, **recovery: object) -> None:
    """Measure the unpruned model and the hand-picked schedule (without and with retraining).

    Columns: Top1/Top5 in PyTorch and deployed, Throughput, Latency, Total_Latency, MACs,
    parameters and ONNX size, all measured on this machine. Top1/Top5 are on the data set's test
    split (all its images unless --eval-limit); the table says which and how many.
    """
    from pipeline.baseline import baseline_specs, run_baselines, save_table
    from pipeline.measure.options import MeasureOptions

    require_schedule(schedule_path)
    out_dir = require_new_folder(out_dir or Path("runs") / f"baseline-{time.strftime('%Y%m%d-%H%M%S')}")
    local_target(target)
    specs = baseline_specs(epochs)

    def on_row(row) -> None:
        click.echo(f"  {row.name:<24} {row.status:<10} {row.seconds:8.1f} s", err=True)

    click.echo(f"edgeprune baseline: {len(specs)} rows of {model} into {out_dir}", err=True)
    # Rows are made in a staging folder that becomes out_dir only when the table is complete.
    with staged_output(out_dir) as staging:
        table = run_baselines(settings, staging, model=model, schedule=schedule_path, epochs=epochs,
                              target=target, lr=lr, batch_size=batch_size,
                              max_steps_per_epoch=max_steps, subset=subset, eval_subset=eval_limit,
                              specs=specs, on_row=on_row, recovery=recovery, measure_options=MeasureOptions.fast(
                                  profile_layers=True) if quick else None)
        save_table(table, staging)
    markdown, data = out_dir / "baseline.md", out_dir / "baseline.json"
    if as_json:
        click.echo(data.read_text())
    else:
        click.echo(table.to_markdown())
        click.echo(f"Wrote {markdown} and {data}")
