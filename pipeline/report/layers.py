"""Per-layer latency profiles of a trial's model, and the comparison of two of them.

The consumer's per-layer profile (OpenVINO profiling counters) may sit in the trial's metrics
(``per_layer`` or ``profile``) or in a JSON file in the trial's run directory. Several shapes are
read: ``{layer: ms}``, ``{layer: {"ms": ...}}`` and ``[{"name": layer, "ms": ...}, ...]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Keys of a trial's metrics that may hold a per-layer profile, in the order they are tried.
PROFILE_KEYS = ("per_layer", "profile", "layers")
#: Files in a run directory that may hold one (result.json is searched for the keys above).
PROFILE_FILES = ("profile.json", "per_layer.json", "result.json")
#: Keys of one layer's record that may hold its time in milliseconds.
TIME_KEYS = ("ms", "time_ms", "real_time_ms", "latency_ms", "real_time", "time")


def _layer_ms(record: Any) -> float | None:
    if isinstance(record, (int, float)) and not isinstance(record, bool):
        return float(record)
    if isinstance(record, Mapping):
        for key in TIME_KEYS:
            if isinstance(record.get(key), (int, float)):
                return float(record[key])
    return None


def parse_profile(data: Any) -> dict[str, float] | None:
    """``{layer name: milliseconds}`` from a profile itself (any accepted shape), or None."""
    if isinstance(data, Mapping):
        parsed = {str(name): _layer_ms(rec) for name, rec in data.items()}
    elif isinstance(data, list):
        parsed = {str(rec.get("name", i)): _layer_ms(rec) for i, rec in enumerate(data)
                  if isinstance(rec, Mapping)}
    else:
        return None
    profile = {name: ms for name, ms in parsed.items() if ms is not None}
    return profile or None


def find_profile(record: Mapping[str, Any]) -> dict[str, float] | None:
    """The profile under one of PROFILE_KEYS of ``record`` or of its ``metrics``, or None."""
    for holder in (record, record.get("metrics")):
        if isinstance(holder, Mapping):
            for key in PROFILE_KEYS:
                profile = parse_profile(holder.get(key))
                if profile:
                    return profile
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("cannot read per-layer profile %s: %s", path, exc)
        return None


def load_profile(metrics: Mapping[str, Any], run_dir: str | Path = "") -> dict[str, float] | None:
    """The per-layer profile from ``metrics`` or, failing that, from a file in ``run_dir``."""
    profile = find_profile(metrics)
    if profile or not run_dir:
        return profile
    for name in PROFILE_FILES:
        path = Path(run_dir) / name
        data = _read_json(path) if path.is_file() else None
        if data is None:
            continue
        # A dedicated profile file is the profile; result.json holds it under a key.
        profile = find_profile(data) if name == "result.json" or isinstance(data, Mapping) and \
            any(k in data for k in PROFILE_KEYS) else parse_profile(data)
        if profile:
            return profile
    return None


@dataclass
class LayerRow:
    name: str
    model_ms: float | None
    reference_ms: float | None


def compare_profiles(model: Mapping[str, float], reference: Mapping[str, float]) -> list[LayerRow]:
    """Layer-by-layer rows in the reference's order, then layers only the model has."""
    names = list(reference) + [n for n in model if n not in reference]
    return [LayerRow(n, model.get(n), reference.get(n)) for n in names]
