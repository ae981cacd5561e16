"""``edgeprune run``: one prune → retrain → export → benchmark run in this process, on defaults."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import click

from pipeline.data import probe_source
from pipeline.files import require_new_folder, require_writable_folder
from pipeline.flow import ACCURACY_NOTE, RunConfig
from pipeline.messages import Target
from pipeline.progress import StageLines, format_duration
from pipeline.schedule import parse_overrides
from pipeline.settings import Settings

from .options import local_target, run_config_options, settings_options
from .outputs import check_run_inputs, require_schedule, staged_output, timing_rows

#: Top1 points below the unpruned model's past which the run says that retraining is needed.
RETRAIN_HINT_POINTS = 2.0
#: ``run``'s own defaults (a person waits for it): deployed accuracy on 2,000 test images (about
#: +/-1 point at 80% Top1; --eval-limit 0 for all 10,000) and the pruned model's validation
#: figures on 1,000 images (--val-limit 0 for all 5,000), after adaptive BN only (--raw-eval adds
#: the figure before it: one more validation pass, 1.3 s on 2 cores).
RUN_DEFAULTS = {"eval_subset": 2000, "val_subset": 1000, "raw_eval": False}


@click.command(context_settings={"default_map": RUN_DEFAULTS})
@run_config_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder for result.json, schedule.yaml and model.onnx "
                   "[default: runs/<time>-<schedule name>]; must not exist yet.")
@click.option("--full-measure", is_flag=True,
              help="Measure as sweeps do (3 s of latency timing, 3 s of throughput, 50 profiled "
                   "inferences, up to two re-timings of a noisy figure) instead of run's shorter settings "
                   "(1 s of timing, no re-timing: a noisy figure is only flagged).")
@click.option("--no-reference", "no_reference", is_flag=True,
              help="Do not time the unpruned model beside the pruned one (no speed-up figure, no "
                   "retraining hint). The unpruned reference is exported and evaluated once, then "
                   "read from <cache-dir>/references.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json instead of the table.")
@settings_options
def run(settings: Settings, schedule_path: Path, overrides: tuple[str, ...], out_dir: Path | None,
        full_measure: bool, no_reference: bool, as_json: bool, target: Target, **options: Any) -> None:
    """Prune a pretrained network with a Distiller schedule, retrain it, export ONNX and benchmark it.

    Runs everything in this process (the in-process queue): no Redis, W&B or GPU needed. Prints
    a line as each stage ends, then a table with the speed-up over the unpruned model timed in
    the same run, and says when Top1 fell enough to need retraining and how long an epoch takes
    here. Each accuracy names its split and how many images measured it.
    """
    require_schedule(schedule_path)
    out_dir = require_new_folder(out_dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{schedule_path.stem}")
    config = RunConfig(schedule=schedule_path, overrides=parse_overrides(overrides),
                       target=local_target(target), **options)
    probe_source(settings.data_path)  # a device or pipe as --data fails here, before any reading
    check_run_inputs(config, settings)
    require_writable_folder(settings.cache_dir)
    with staged_output(out_dir) as staging:
        record = _run(config, settings, staging, full_measure, not no_reference)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(format_record(record, out_dir))


def _run(config: RunConfig, settings: Settings, out_dir: Path, full_measure: bool,
         with_reference: bool) -> dict:
    """Produce and measure through the in-process queue (the same path as distributed agents),
    timed beside the unpruned model; result.json gets the comparison."""
    from pipeline.files import atomic_write_text
    from pipeline.flow import measure_work
    from pipeline.measure import MeasureOptions
    from pipeline.queue import NO_WAIT_S, open_queue
    from pipeline.trial import run_trial

    lines = StageLines(epochs=config.epochs)
    click.echo(f"edgeprune run: {config.model} with {config.schedule}, {config.epochs} epoch(s), "
               f"{config.target.backend} {config.target.device} {config.target.precision}", err=True)
    options = MeasureOptions() if full_measure else MeasureOptions.single_run()
    unpruned = None
    if with_reference:
        from pipeline.reference import unpruned_reference

        start = time.perf_counter()
        unpruned = unpruned_reference(config, settings)
        reference_s = time.perf_counter() - start
        lines.stage("reference", reference_s)
        options = dataclasses.replace(options, reference_onnx=str(unpruned.onnx_path))
    with open_queue(None, measure_work(settings, options), config.target) as queue:
        outcome = run_trial(config, queue, settings, out_dir, timeout=NO_WAIT_S,
                            on_stage=lines.stage, on_epoch=lines.on_epoch())
    record = json.loads(outcome.result_path.read_text())
    if unpruned is not None:
        record.update(_comparison(record, unpruned, config, settings, lines))
        record["stage_seconds"]["reference"] = round(reference_s, 3)
        atomic_write_text(outcome.result_path, json.dumps(record, indent=2))
    return record


def _comparison(record: dict, unpruned: Any, config: RunConfig, settings: Settings,
                lines: StageLines) -> dict[str, Any]:
    """result.json's ``unpruned``, ``speedup_vs_unpruned`` and ``retrain_hint`` entries."""
    m = record["metrics"]
    extra: dict[str, Any] = {"unpruned": {"Top1_torch": unpruned.top1, "eval_split": unpruned.eval_split,
                                          "eval_count": unpruned.eval_count,
                                          "onnx": str(unpruned.onnx_path)}}
    if m.get("Relative_Latency"):
        extra["speedup_vs_unpruned"] = round(1.0 / float(m["Relative_Latency"]), 3)
    top1 = m.get("Top1")
    drop = unpruned.top1 - float(top1) if isinstance(top1, (int, float)) else None
    if drop is not None and drop > RETRAIN_HINT_POINTS and config.epochs == 0:
        from pipeline.retrain_time import estimate_run_epoch

        start = time.perf_counter()
        estimate = estimate_run_epoch(config, settings, record.get("arch_signature", ""),
                                      why=f"Top1 fell {drop:.1f} points below the unpruned model's")
        estimate_s = time.perf_counter() - start
        lines.stage("retrain_estimate", estimate_s)
        record["stage_seconds"]["retrain_estimate"] = round(estimate_s, 3)
        extra["retrain_hint"] = {"top1_drop": round(drop, 2), "threshold": RETRAIN_HINT_POINTS,
                                 "epoch_seconds": round(estimate.seconds, 1),
                                 "step_seconds": round(estimate.step_s, 4),
                                 "steps_per_epoch": estimate.steps_per_epoch,
                                 "timed_steps": estimate.timed_steps}
    return extra


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_record(record: dict, out_dir: Path) -> str:
    """The result as a table a person reads at a glance."""
    m = record["metrics"]
    latency = m.get("latency") or {}
    rows = [
        ("status", record["status"] + (f" ({record['reason']})" if record["reason"] else "")),
        (f"Top1 / Top5 after pruning (val{_images(m.get('eval_images'))})", f"{_fmt(m.get('Top1_before'), '.2f')} / {_fmt(m.get('Top5_before'), '.2f')} %"
         + _adaptive_bn_note(m)),
        (f"Top1 / Top5 deployed ({record['eval_split']}{_images(m.get('eval_count'))})",
         f"{_fmt(m.get('Top1'), '.2f')} / {_fmt(m.get('Top5'), '.2f')} %"),
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
    rows[3:3] = _unpruned_rows(record)
    if record.get("accuracy_gap_flagged"):
        rows.append(("WARNING", f"deployed Top1 differs from PyTorch by {record['deployed_minus_torch_top1']} points"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    hint = record.get("retrain_hint")
    if hint:
        lines.append(f"Top1 fell {hint['top1_drop']:.1f} points below the unpruned model's: retrain: "
                     f"--epochs 1 takes about {format_duration(hint['epoch_seconds'])} on this machine "
                     f"({hint['steps_per_epoch']} steps of {hint['step_seconds']:.2f} s as timed on the "
                     "pruned model, plus validation).")
    lines += [f"Note: {ACCURACY_NOTE}.", f"Wrote {out_dir}/result.json, schedule.yaml, model.onnx"]
    return "\n".join(lines)


def _adaptive_bn_note(m: dict) -> str:
    if not m.get("bn_recalibrate"):
        return ""
    if m.get("Top1_before_raw") is None:
        return f" (adaptive BN on {m['bn_recalibrate']} train images)"
    return f" (adaptive BN; raw {_fmt(m['Top1_before_raw'], '.2f')} %)"


def _images(count: object) -> str:
    return f", {count:,} images" if isinstance(count, int) else ""


def _unpruned_rows(record: dict) -> list[tuple[str, str]]:
    """The rows that compare with the unpruned model (absent without a reference)."""
    unpruned = record.get("unpruned")
    if not unpruned:
        return []
    m = record["metrics"]
    rows = [(f"unpruned Top1 (PyTorch, same {unpruned['eval_count']:,} images)",
             f"{unpruned['Top1_torch']:.2f} %")]
    speedup = record.get("speedup_vs_unpruned")
    if speedup:
        rows.append(("speed-up vs unpruned",
                     f"{speedup:.2f}x faster (request time {m['Relative_Latency']:.3f} of the unpruned "
                     f"model's, timed in alternation, spread {100 * m.get('relative_spread', 0):.1f}%)"))
    return rows
