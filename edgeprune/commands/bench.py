"""``edgeprune bench``: benchmark an ONNX model (optionally against a baseline) and print the figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from pipeline.files import atomic_write_text, check_replaceable
from pipeline.messages import Target
from pipeline.settings import Settings

from .options import FiniteFloat, quiet_wait_option, settings_options, target_options
from .outputs import timing_rows

if TYPE_CHECKING:
    from pipeline.measure import LayerProfile, Measurement


def _eval_data(settings: Settings, split: str, limit: int, accuracy: bool,
               calibrate: bool) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Evaluation images/labels (when --accuracy) and INT8 calibration images (train split)."""
    if not (accuracy or calibrate):
        return None, None, None
    from pipeline.data import load_data, to_tensor_batch

    data = load_data(settings.data_path, settings.cache_dir)
    images = labels = calibration = None
    if accuracy:
        chosen = data.split(split, limit)
        images, labels = to_tensor_batch(chosen.images), chosen.labels
    if calibrate:
        calibration = data.calibration_images()
    return images, labels, calibration


def _layer_profile(measurement: Measurement) -> LayerProfile:
    """The layer profile that every engine takes in ``measure``."""
    if measurement.profile is None:
        raise RuntimeError(f"{measurement.onnx_path} was measured without its layer profile")
    return measurement.profile


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


RELATIVE_LABEL = "Relative_Latency (alternating)"
#: The comparison column: every ratio reads the same way.
RATIO_HEADER = "speed-up of model over baseline (>1: model faster or smaller)"
#: Above this, the reference kernel's slowdown (pipeline/measure/interference.py) says more about
#: its few readings in a fresh process, or the engine's threads still spinning beside it, than
#: about the machine: it is shown bounded, with the reason.
SLOWDOWN_SHOWN_MAX = 10.0
SLOWDOWN_NOTE = ("machine slowdown: a numpy reference kernel's time over its quiet time as seen so "
                 "far in this process (1.00x: quiet); a fresh process has few readings, so it is a "
                 "hint, and figures above 10x are shown as >10x")


def slowdown_cell(slowdown: float) -> str:
    """``1.23x``, or ``>10x (...)`` with why such a figure is not the machine's."""
    if slowdown <= SLOWDOWN_SHOWN_MAX:
        return f"{slowdown:.2f}x"
    return (f">{SLOWDOWN_SHOWN_MAX:g}x (not the machine: the kernel had few readings in this "
            "process or ran beside the engine's threads)")


def _rows(metrics: dict[str, Any], relative: bool = False) -> list[tuple[str, str]]:
    lat = metrics["latency"]
    version = metrics.get("openvino_version") or metrics.get("onnxruntime_version")
    rows = [
        ("engine", f"{metrics['backend']} {version}"),
        ("device", f"{metrics['device']} ({metrics['device_name']})"),
        ("precision (inference)", f"{metrics['precision']} ({metrics['inference_precision']})"),
        ("threads / streams / batch", f"{metrics['threads']} / {metrics['streams']} / "
                                      f"{metrics['batch_size']}"),
        ("Latency ms (layer sum)", _fmt(metrics["Latency"], 4)),
        ("Total_Latency ms (quiet median)", _fmt(metrics["Total_Latency"], 4)),
        ("  median of all / 95% CI", f"{lat['median']:.4f} / {lat['ci95_low']:.4f} .. "
                                     f"{lat['ci95_high']:.4f}"),
        ("  mean / std", f"{lat['mean']:.4f} / {lat['std']:.4f}"),
        ("  p90 / p99", f"{lat['p90']:.4f} / {lat['p99']:.4f}"),
        ("  min / max / count", f"{lat['min']:.4f} / {lat['max']:.4f} / {lat['count']}"),
        ("  machine slowdown / waited", f"{slowdown_cell(metrics['machine_slowdown'])} / "
                                        f"{metrics['quiet_wait_s']:.0f} s"),
        *timing_rows(metrics),
        ("Throughput img/s", _fmt(metrics["Throughput"], 1)),
    ]
    if relative:
        value = metrics.get("Relative_Latency")
        rows += [(RELATIVE_LABEL, "-" if value is None else
                  f"{value:.4f} (IQR {metrics['relative_spread']:.1%}, {metrics['relative_polls']} polls)")]
    if "Top1" in metrics:
        rows += [("Top1 / Top5 % (deployed)", f"{metrics['Top1']:.2f} / {metrics['Top5']:.2f} "
                                              f"on {metrics['eval_count']} images")]
    rows += [("ONNX / IR bytes", f"{_fmt(metrics['onnx_bytes'])} / {_fmt(metrics['ir_bytes'])}"),
             ("params / MACs", f"{_fmt(metrics['params'])} / {_fmt(metrics['macs'])}")]
    return rows


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def format_table(named: list[tuple[str, dict[str, Any]]]) -> str:
    """The figures of one or more measured models side by side."""
    relative = any("Relative_Latency" in metrics for _, metrics in named)
    columns = [_rows(metrics, relative) for _, metrics in named]
    labels = [label for label, _ in columns[0]]
    header = ["", *[name for name, _ in named]]
    body = [[label, *[column[i][1] for column in columns]] for i, label in enumerate(labels)]
    if len(named) == 2:
        header.append(RATIO_HEADER)
        model, base = named[0][1], named[1][1]
        # One direction: times and sizes baseline / model, throughput model / baseline.
        extra = {label: _ratio(base.get(key), model.get(key)) for label, key in (
            ("Latency ms (layer sum)", "Latency"), ("Total_Latency ms (quiet median)", "Total_Latency"),
            ("params / MACs", "macs"))}
        extra["Throughput img/s"] = _ratio(model.get("Throughput"), base.get("Throughput"))
        # The model timed against the baseline in alternation (model / baseline): its inverse.
        extra[RELATIVE_LABEL] = _ratio(1.0, model.get("Relative_Latency"))
        for row in body:
            row.append(f"{extra[row[0]]:.3f}x" if extra.get(row[0]) else "")
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (header, *body)]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + ["", SLOWDOWN_NOTE])


def _baseline(value: str | None, settings: Settings) -> tuple[Path | None, str]:
    """The baseline's ONNX file and its column name: a file as given, or a network name's
    unpruned model (exported once into the cache); anything else is a BenchmarkError."""
    from pipeline.errors import BenchmarkError
    from pipeline.flow import unpruned_onnx
    from pipeline.models import MODEL_NAMES

    if value is None:
        return None, ""
    if value in MODEL_NAMES and not Path(value).exists():
        return unpruned_onnx(value, "A", 10, settings), f"unpruned {value}"
    if not Path(value).exists():
        raise BenchmarkError(f"--baseline {value!r} is neither a file nor a network name: pass "
                             f"an ONNX file or one of {', '.join(MODEL_NAMES)}")
    return Path(value), Path(value).name


@click.command()
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(path_type=Path))
@target_options
@click.option("--accuracy", is_flag=True,
              help="Also measure deployed Top1/Top5 through the compiled model on --split.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val"]),
              help="Split for --accuracy (val for search decisions, test for reports).")
@click.option("--limit", default=0, show_default=True, type=click.IntRange(min=0),
              help="Evaluate on the first N images of the split only (0: all).")
@click.option("--baseline", "baseline_arg", default=None, metavar="FILE.onnx|MODEL_NAME",
              help="Second model measured with the same settings and shown beside MODEL with "
                   "speed-ups (>1: MODEL faster or smaller): an ONNX file, or a network name "
                   "(resnet56_cifar, ...) whose unpruned pretrained model is exported once and "
                   "cached. MODEL is also timed in alternation with it (Relative_Latency), the "
                   "ratio that slow periods of a shared machine move least.")
@click.option("--per-layer", is_flag=True,
              help="Print the per-layer profile (time, type, kernel); with --baseline, layer by "
                   "layer against it.")
@click.option("--min-iters", default=None, type=click.IntRange(min=1),
              help="Timed inferences at least [default 1000].")
@click.option("--min-time", default=None, type=FiniteFloat(min=0),
              help="Seconds of timed inferences at least, for latency and throughput each "
                   "[default 3]; timing stops when both minimums are met.")
@click.option("--quiet-window", default=None, type=click.IntRange(min=1),
              help="Consecutive requests per window of the quiet median that Total_Latency "
                   "reports (the lowest window median) [default 100].")
@quiet_wait_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the JSON to this file (only when the benchmark succeeded).")
@settings_options
def bench(settings: Settings, model_path: Path, target: Target, accuracy: bool, split: str,
          limit: int, baseline_arg: str | None, per_layer: bool, min_iters: int | None,
          min_time: float | None, quiet_window: int | None, quiet_wait: float, as_json: bool,
          out: Path | None) -> None:
    """Benchmark MODEL.onnx on OpenVINO or ONNX Runtime: latency statistics, the seed's Latency /
    Total_Latency / Throughput figures, deployed accuracy, sizes and the per-layer profile.
    """
    from pipeline.measure import (
        MeasureOptions,
        check_target,
        compare_profiles,
        format_comparison,
        format_profile,
        measure,
        onnx_facts,
    )

    if out is not None:
        check_replaceable(out)  # before measuring: --out /dev/full or a symlink is refused at once
    check_target(target)
    baseline, baseline_name = _baseline(baseline_arg, settings)
    paths = [model_path] + ([baseline] if baseline else [])
    for path in paths:
        onnx_facts(path)  # a missing or corrupt file fails here, before any data is loaded
    images, labels, calibration = _eval_data(settings, split, limit, accuracy,
                                             target.precision == "int8")
    overrides: dict[str, Any] = {k: v for k, v in (("min_iters", min_iters), ("min_time_s", min_time),
                                                   ("throughput_time_s", min_time), ("quiet_window", quiet_window),
                                                   ("quiet_wait_s", quiet_wait))
                                 if v is not None}
    options = MeasureOptions(profile_layers=per_layer, calibration_images=calibration, **overrides)
    # MODEL is also timed in alternation with the baseline (Relative_Latency); the baseline alone.
    model_options = replace(options, reference_onnx=str(baseline)) if baseline else options
    measured = [measure(model_path, target, images, labels, model_options)]
    if baseline:
        measured.append(measure(baseline, target, images, labels, options))
    names = [model_path.name] + ([baseline_name] if baseline else [])
    named = [(name, m.to_metrics()) for name, m in zip(names, measured)]
    report: dict[str, Any] = {"model": named[0][1]}
    if baseline:
        report["baseline"] = named[1][1]
    comparison = None
    if per_layer and baseline:
        comparison = compare_profiles(_layer_profile(measured[0]), _layer_profile(measured[1]))
        report["per_layer_comparison"] = [{**vars(row), "speedup": row.speedup} for row in comparison]
    text = json.dumps(report, indent=2, sort_keys=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text + "\n")
    if as_json:
        click.echo(text)
        return
    click.echo(format_table(named))
    if per_layer:
        click.echo("")
        click.echo(format_comparison(comparison) if comparison else format_profile(_layer_profile(measured[0])))
    if labels is not None:  # given exactly when --accuracy
        from pipeline.data import measured_on

        click.echo(f"\nTop1/Top5 on {measured_on(settings.data_path, split, len(labels))}.")
