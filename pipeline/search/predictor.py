"""The sweep's latency models, stored in its study so that every worker predicts with the same ones.

``edgeprune sweep --latency-model lm.json`` (or ``producer --loop --latency-model``) stores each
model's JSON in the study's user attributes on first open, as ``StudyLatencyCache`` stores
measurements: a second worker sharing the study (another process, another machine on PostgreSQL)
needs no file and reuses them. ``--latency-model`` may be given once per precision the sweep's
trials run at (its ``precision`` parameter, else the base target's), so that an INT8 trial is
priced by an INT8 profile and an fp32 one by an fp32 profile. A model fitted for another backend,
device, precision or base network is refused with one line (``LatencyModels.check``), and so is a
different set of files for a study that holds one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import optuna

from pipeline.errors import SweepError
from pipeline.messages import Target

from .config import SweepConfig
from .space import extreme_values

if TYPE_CHECKING:
    from pipeline.latency import LatencyModels

#: Study user attribute holding the latency models (a list of their JSON, parsed).
LATENCY_MODELS_ATTR = "latency_models"
#: The attribute of studies written before several models were kept: one model's JSON.
LEGACY_LATENCY_MODEL_ATTR = "latency_model"


def trial_precisions(config: SweepConfig, target: Target) -> tuple[str, ...]:
    """The precisions the sweep's trials run at: its ``precision`` parameter's values, else the
    base target's."""
    spec = config.parameters.get("precision")
    if spec is None:
        return (target.precision,)
    return tuple(dict.fromkeys(str(v) for v in extreme_values(spec)))


def study_latency_models(study: optuna.Study, paths: Sequence[Path], target: Target, model_name: str,
                         precisions: Sequence[str] | None = None, require_each: bool = False
                         ) -> "LatencyModels | None":
    """The study's latency models: those in ``paths`` (stored on first use), else the stored ones,
    else None (no prediction: the gate measures). ``precisions``: those the trials run at
    (``trial_precisions``; default the target's). ``require_each``: refuse, before anything is
    stored, models that leave one of them unpriced (a multi-fidelity sweep predicts every trial)."""
    from pipeline.latency import LatencyModel, LatencyModels, load_latency_model

    precisions = tuple(precisions or (target.precision,))
    stored = study.user_attrs.get(LATENCY_MODELS_ATTR)
    if stored is None and LEGACY_LATENCY_MODEL_ATTR in study.user_attrs:
        stored = [study.user_attrs[LEGACY_LATENCY_MODEL_ATTR]]
    if not paths:
        if stored is None:
            return None
        source = f"the latency model stored in study {study.study_name!r}"
        models = LatencyModels(tuple(LatencyModel.from_dict(data, source=source) for data in stored))
    else:
        models = LatencyModels(tuple(load_latency_model(Path(path)) for path in paths))
    models.check(target, model_name, precisions)
    if require_each:
        for precision in precisions:
            models.require(dataclasses.replace(target, precision=precision), model_name)
    if not paths:
        return models
    given = _in_order([json.loads(m.to_json()) for m in models.models])
    if stored is None:
        study.set_user_attr(LATENCY_MODELS_ATTR, given)
    elif _in_order(stored) != given:
        raise SweepError(f"study {study.study_name!r} already holds other latency models than "
                         f"{', '.join(map(str, paths))}: leave out --latency-model to use the stored "
                         "ones, or give the sweep another --study")
    return models


def _in_order(models: list[dict]) -> list[dict]:
    """Model JSONs in one order, so that the same set given in another order compares equal."""
    return sorted(models, key=lambda data: json.dumps(data, sort_keys=True))
