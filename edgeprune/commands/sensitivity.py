"""``edgeprune sensitivity``: prune each conv alone at each level; accuracy and latency per row."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from edgeprune.commands.options import MAX_BATCH, FiniteFloat, settings_options
from pipeline.models import MODEL_NAMES
from pipeline.settings import Settings

DEFAULT_LEVELS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


@click.command()
@click.option("--model", default="resnet56_cifar", show_default=True, type=click.Choice(MODEL_NAMES),
              help="Network to analyse.")
@click.option("--shortcut", default="A", show_default=True, type=click.Choice(["A", "B"]),
              help="Residual shortcut: A zero-padding (the pretrained checkpoints), B 1x1 conv + BatchNorm.")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Trained weights to start from [default: the pretrained checkpoint of --model in "
                   "the models folder].")
@click.option("--group-type", default="Filters", show_default=True,
              type=click.Choice(["Filters", "Channels", "Blocks"]),
              help="Structures removed: Filters (a conv's output channels), Channels (its input channels), "
                   "or Blocks (each residual block with an identity shortcut removed alone; --levels "
                   "is then 0,1 and --layers globs block names such as 'layer2.*').")
@click.option("--levels", default=DEFAULT_LEVELS, show_default=True,
              help="Comma-separated fractions of each layer's structures to remove; 0 is the unpruned model.")
@click.option("--layers", default="*", show_default=True,
              help="Glob over conv weight names (e.g. 'layer1.*.conv1.weight'); convs the structured "
                   "pruner refuses for --group-type (option-A residual stream) are skipped.")
@click.option("--criterion", default="l1", show_default=True,
              help="Ranking criterion for the structures: l1, l2, fpgm or bn_scale.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for sensitivity.csv and sensitivity.png; rows already in its CSV are skipped "
                   "[default: sensitivity-<model>-<group-type>].")
@click.option("--max-val", type=click.IntRange(min=0), default=0, show_default=True,
              help="Evaluate on the first N validation images only (0: the whole validation split).")
@click.option("--val-fraction", type=FiniteFloat(0.01, 0.5), default=0.1, show_default=True,
              help="Share of the train split held out as validation (as in `edgeprune run`).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=250, show_default=True,
              help="Evaluation batch size.")
@click.option("--no-latency", is_flag=True,
              help="Skip exporting and measuring each pruned architecture on OpenVINO (accuracy only).")
@click.option("--latency-iters", type=click.IntRange(min=1), default=200, show_default=True,
              help="Timed inferences per architecture (more: steadier latency, slower run).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a summary.")
@settings_options
def sensitivity(model: str, shortcut: str, checkpoint: Path | None, group_type: str, levels: str, layers: str,
                criterion: str, out_dir: Path | None, max_val: int, val_fraction: float, batch_size: int,
                no_latency: bool, latency_iters: int, as_json: bool, settings: Settings) -> None:
    """Per-layer pruning sensitivity: prune each conv alone at each level, on a copy of the model,
    and record validation Top1/Top5, the OpenVINO latency of the pruned architecture and the
    structures kept. Writes OUT/sensitivity.csv (resumable) and OUT/sensitivity.png.
    """
    from pipeline import sensitivity as sense
    from pipeline.data import Split, load_data
    from pipeline.errors import UserError
    from pipeline.files import require_input_file
    from pipeline.models import create_model, default_checkpoint, load_checkpoint
    from pipeline.pruning.criteria import criterion_names

    if criterion not in criterion_names():
        raise UserError(f"--criterion {criterion!r} is not supported: use one of {', '.join(criterion_names())}")
    if max_val < 0:
        raise UserError(f"--max-val {max_val} is negative: use 0 for the whole split or e.g. 500")
    if checkpoint is not None:
        require_input_file(checkpoint, "--checkpoint", "pass --checkpoint FILE (a .th or .pt file)")
    level_list = list(sense.BLOCK_LEVELS) if group_type == sense.BLOCKS else sense.parse_levels(levels)
    latency = None if no_latency else sense.openvino_latency(iters=latency_iters)
    device = settings.torch_device()
    checkpoint = checkpoint or default_checkpoint(model, settings)
    if checkpoint is None:
        raise UserError(f"no pretrained checkpoint for {model} in {settings.checkpoints_dir}: "
                        "pass --checkpoint FILE (sensitivity of random weights means nothing)")
    data = load_data(settings.data_path, settings.cache_dir, val_fraction=val_fraction)
    if len(data.val) == 0:
        raise UserError("the validation split is empty: pass --val-fraction 0.1")
    val = data.val if not max_val else Split(data.val.images[:max_val], data.val.labels[:max_val], "val")
    net = create_model(model, num_classes=len(data.classes), shortcut=shortcut)
    load_checkpoint(net, checkpoint)
    net.to(device).eval()
    weights = sense.candidate_layers(net, group_type, layers, criterion)
    out_dir = out_dir or Path(f"sensitivity-{model}-{group_type.lower()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sense.run_sensitivity(net, weights, level_list, group_type, out_dir / "sensitivity.csv",
                                 sense.accuracy_on(val, batch_size, device), latency, criterion)
    png = sense.plot_sensitivity(rows, out_dir / "sensitivity.png", group_type,
                                 title=f"{model} {group_type} sensitivity ({len(val)} val images)")
    if as_json:
        click.echo(json.dumps({"csv": str(out_dir / "sensitivity.csv"), "png": str(png),
                               "rows": [asdict(r) for r in rows]}, indent=2))
        return
    click.echo(sense.format_rows(rows))
    click.echo(f"wrote {out_dir / 'sensitivity.csv'} and {png} ({len(weights)} layers x {len(level_list)} "
               f"levels; Top1/Top5 on {len(val):,} val images held out of the train split of "
               f"{settings.data_path.name}).")

