"""``edgeprune schedule check|show``: validate a Distiller schedule, or show what it prunes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.models import MODEL_NAMES

_FILE = click.argument("schedule_file", metavar="FILE", type=click.Path(path_type=Path))
_MODEL = click.option("--model", default="resnet56_cifar", show_default=True, type=click.Choice(MODEL_NAMES),
                      help="Network the schedule is checked against (a fresh one; no checkpoint needed).")
_SHORTCUT = click.option("--shortcut", default="A", show_default=True, type=click.Choice(["A", "B"]),
                         help="Residual shortcut of the network: A zero-padding (the pretrained "
                              "checkpoints), B 1x1 conv + BatchNorm (Distiller's ResNet56).")
_SET = click.option("--set", "overrides", multiple=True, metavar="INSTANCE.KEY=VALUE",
                    help="Rewrite the schedule before checking, e.g. filter_pruner_70.desired_sparsity=0.5 "
                         "(repeatable; values are YAML scalars; round_to=N sets the global default).")


@click.group()
def schedule() -> None:
    """Check or show a Distiller compression schedule."""


@schedule.command()
@_FILE
@_MODEL
@_SHORTCUT
@_SET
def check(schedule_file: Path, model: str, shortcut: str, overrides: tuple[str, ...]) -> None:
    """Validate FILE against the model, without pruning: exit 0 and "OK: ...", or one error line (exit 2)."""
    from pipeline.models import create_model
    from pipeline.schedule import load_schedule

    loaded = load_schedule(schedule_file, overrides)
    loaded.validate(create_model(model, shortcut=shortcut))
    click.echo(f"OK: {schedule_file}: {len(loaded.pruners)} pruners, {len(loaded.lr_schedulers)} lr schedulers, "
               f"{len(loaded.extensions)} extensions, {len(loaded.policies)} policies; valid for {model} "
               f"(shortcut {shortcut})")


@schedule.command()
@_FILE
@_MODEL
@_SHORTCUT
@_SET
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (per-layer and totals).")
def show(schedule_file: Path, model: str, shortcut: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Prune a fresh model with FILE's one-shot pruners and print each pruned layer's channels
    and MACs before/after, with model totals.

    Channel counts, MACs and parameters depend only on the schedule, not on the weights (which
    filters go does), so no checkpoint is loaded. MACs count conv and linear layers (Distiller's
    convention); parameters count every parameter, BatchNorm included.
    """
    from pipeline.models import create_model
    from pipeline.pruning import prune_one_shot
    from pipeline.schedule import load_schedule

    loaded = load_schedule(schedule_file, overrides)
    report = prune_one_shot(create_model(model, shortcut=shortcut), loaded)
    if as_json:
        click.echo(json.dumps({"schedule": str(schedule_file), "model": model, "shortcut": shortcut,
                               **report.to_dict()}, indent=2))
        return
    click.echo(f"{schedule_file} on {model} (shortcut {shortcut}); pruners applied: "
               f"{', '.join(report.pruners_applied) or 'none'}")
    click.echo(report.table())
    click.echo(f"architecture: {report.arch_after}")
