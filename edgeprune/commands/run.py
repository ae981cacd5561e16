"""``edgeprune run``: one prune → retrain → export → benchmark run on embedded defaults."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from pipeline.flow import JPEG_NOTE, RunConfig
from pipeline.messages import Target
from pipeline.schedule import parse_overrides
from pipeline.settings import Settings

from .options import run_config_options, settings_options
from .outputs import require_schedule, staged_output, timing_rows

#: The in-process consumer measures one model; an hour means something is stuck.
EMBEDDED_TIMEOUT_S = 3600.0


@click.command()
@run_config_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder for result.json, schedule.yaml and model.onnx "
                   "[default: runs/<time>-<schedule name>]; must not exist yet.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json instead of the table.")
@settings_options
def run(settings: Settings, schedule_path: Path, overrides: tuple[str, ...], out_dir: Path | None,
        as_json: bool, target: Target, **options: object) -> None:
    """Prune a pretrained network with a Distiller schedule, retrain it, export ONNX and benchmark it.

    Runs everything in this process with the embedded queue: no Redis, W&B or GPU needed. Accuracy
    on the shared JPEG CIFAR-10 is lower than on the original set (ResNet56: 83.2% vs 93.4%).
    """
    require_schedule(schedule_path)
    out_dir = out_dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{schedule_path.stem}"
    config = RunConfig(schedule=schedule_path, overrides=parse_overrides(overrides), target=target,
                       **options)  # type: ignore[arg-type]
    with staged_output(out_dir) as staging:
        record = _run(config, settings, staging)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(format_record(record, out_dir))


def _run(config: RunConfig, settings: Settings, out_dir: Path) -> dict:
    """Produce and measure through the embedded queue: the same path as distributed agents."""
    from pipeline.queue import embedded_queue, measure_work, run_trial

    def on_stage(name: str, seconds: float) -> None:
        click.echo(f"  {name:<16} {seconds:8.2f} s", err=True)

    click.echo(f"edgeprune run: {config.model} with {config.schedule}", err=True)
    with embedded_queue(measure_work(settings), config.target) as queue:
        outcome = run_trial(config, queue, settings, out_dir, timeout=EMBEDDED_TIMEOUT_S,
                            on_stage=on_stage)
    return json.loads(outcome.result_path.read_text())


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_record(record: dict, out_dir: Path) -> str:
    """The result as a table a person reads at a glance."""
    m = record["metrics"]
    latency = m.get("latency") or {}
    rows = [
        ("status", record["status"] + (f" ({record['reason']})" if record["reason"] else "")),
        ("Top1 / Top5 after pruning (val)", f"{_fmt(m.get('Top1_before'), '.2f')} / {_fmt(m.get('Top5_before'), '.2f')} %"
         + (f" (adaptive BN; raw {_fmt(m.get('Top1_before_raw'), '.2f')} %)" if m.get("bn_recalibrate") else "")),
        (f"Top1 / Top5 deployed ({record['eval_split']})", f"{_fmt(m.get('Top1'), '.2f')} / {_fmt(m.get('Top5'), '.2f')} %"),
        ("Total_Latency quiet median (p90)", f"{_fmt(m.get('Total_Latency'), '.3f')} ms ({_fmt(latency.get('p90'), '.3f')} ms)"),
        ("Latency (sum of layers)", f"{_fmt(m.get('Latency'), '.3f')} ms"),
        *timing_rows(m),
        ("Throughput", f"{_fmt(m.get('Throughput'), '.1f')} images/s"),
        ("MACs", f"{_fmt(m.get('macs_before'), ',')} -> {_fmt(m.get('macs'), ',')}"),
        ("parameters", f"{_fmt(m.get('params_before'), ',')} -> {_fmt(m.get('params'), ',')}"),
        ("ONNX size", f"{_fmt(m.get('onnx_bytes'), ',')} bytes"),
        ("target", f"{record['target']['backend']} {record['target']['device']}, "
                   f"precision {m.get('precision', record['target']['precision'])}"),
    ]
    if "Top1_torch" in m:
        rows.insert(2, (f"Top1 / Top5 PyTorch ({record['eval_split']})",
                        f"{_fmt(m['Top1_torch'], '.2f')} / {_fmt(m.get('Top5_torch'), '.2f')} %"))
    if record.get("accuracy_gap_flagged"):
        rows.append(("WARNING", f"deployed Top1 differs from PyTorch by {record['deployed_minus_torch_top1']} points"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"Note: {JPEG_NOTE}.", f"Wrote {out_dir}/result.json, schedule.yaml, model.onnx"]
    return "\n".join(lines)
