"""``edgeprune schedule check|show``: validate a Distiller schedule, or show what it prunes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.models import MODEL_NAMES
from pipeline.settings import Settings

from .options import settings_options

if TYPE_CHECKING:
    from torch import nn

    from pipeline.batchnorm import Calibration
    from pipeline.schedule import Schedule

#: The network checked against when neither --model nor the schedule names one.
DEFAULT_MODEL = "resnet56_cifar"
_FILE = click.argument("schedule_file", metavar="FILE", type=click.Path(path_type=Path))
_MODEL = click.option("--model", default=None, type=click.Choice(MODEL_NAMES),
                      help="Network the schedule is checked against (a fresh one; no checkpoint needed) "
                           "[default: the network the schedule names (net_thinner's arch), else "
                           f"{DEFAULT_MODEL}].")
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
def check(schedule_file: Path, model: str | None, shortcut: str, overrides: tuple[str, ...]) -> None:
    """Validate FILE against the model, without pruning: exit 0 and "OK: ...", or one error line (exit 2)."""
    from pipeline.models import create_model
    from pipeline.pruning import load_schedule, validate_schedule
    from pipeline.schedule import check_round_to, parse_overrides

    loaded = load_schedule(schedule_file, parse_overrides(overrides))
    model = model or _named_model(loaded)
    network = create_model(model, shortcut=shortcut)
    validate_schedule(loaded, network)
    check_round_to(loaded, dict(network.named_parameters()))
    click.echo(f"OK: {schedule_file}: {len(loaded.pruners)} pruners, {len(loaded.lr_schedulers)} lr schedulers, "
               f"{len(loaded.extensions)} extensions, {len(loaded.policies)} policies; valid for {model} "
               f"(shortcut {shortcut})")


@schedule.command()
@_FILE
@_MODEL
@_SHORTCUT
@_SET
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (per-layer and totals).")
@settings_options
def show(schedule_file: Path, model: str | None, shortcut: str, overrides: tuple[str, ...], as_json: bool,
         settings: Settings) -> None:
    """Prune a fresh model with FILE's one-shot pruners and print each pruned layer's channels
    and MACs before/after, with model totals, and the residual blocks removed and kept.

    Channel counts, MACs and parameters depend only on the schedule, not on the weights (which
    filters go does), so no checkpoint is loaded, except for a ResidualBlockPruner whose criterion
    is sensitivity: which blocks go is then decided as a run would, on the pretrained checkpoint
    and 256 train images of --data (the first time for them a line per block says it computes;
    the ranking is then read from --cache-dir, shared with runs). MACs count conv and linear layers (Distiller's convention);
    parameters count every parameter, BatchNorm included.
    """
    from pipeline.models import create_model
    from pipeline.pruning import load_schedule, prune_one_shot
    from pipeline.schedule import parse_overrides

    loaded = load_schedule(schedule_file, parse_overrides(overrides))
    model = model or _named_model(loaded)
    net = create_model(model, shortcut=shortcut)
    report = prune_one_shot(net, loaded, calibration=_block_calibration(loaded, net, model, settings),
                            cache_dir=settings.cache_dir)
    if as_json:
        click.echo(json.dumps({"schedule": str(schedule_file), "model": model, "shortcut": shortcut,
                               **report.to_dict()}, indent=2))
        return
    click.echo(f"{schedule_file} on {model} (shortcut {shortcut}); pruners applied: "
               f"{', '.join(report.pruners_applied) or 'none'}")
    click.echo(report.table())
    click.echo(f"architecture: {report.arch_after}")


def _named_model(loaded: "Schedule") -> str:
    """The network ``loaded`` names when it is one edgeprune has, else the default."""
    named = loaded.written_for()
    return named if named in MODEL_NAMES else DEFAULT_MODEL


def _block_calibration(loaded: "Schedule", net: "nn.Module", model: str, settings: Settings) -> "Calibration | None":
    """Train images (and the pretrained weights loaded into ``net``) when a block pruner ranks on data."""
    from pipeline.pruning.compression import effective_args

    if not any(spec.class_name == "ResidualBlockPruner" and
               effective_args(loaded, "pruners", name)["criterion"] == "sensitivity"
               for name, spec in loaded.pruners.items()):
        return None
    from pipeline.batchnorm import Calibration
    from pipeline.data import load_data
    from pipeline.errors import UserError
    from pipeline.models import default_checkpoint, load_checkpoint

    checkpoint = default_checkpoint(model, settings)
    if checkpoint is None:
        raise UserError(f"criterion sensitivity ranks blocks of the pretrained {model}, and none is in "
                        f"{settings.checkpoints_dir}: pass --models-dir DIR, or --set <pruner>.criterion=l1_bn2")
    load_checkpoint(net, checkpoint)
    data = load_data(settings.data_path, settings.cache_dir)
    return Calibration.from_split(data.train, 256)
