"""The sweep's latency model, stored in its study so that every worker predicts with the same one.

``edgeprune sweep --latency-model lm.json`` (or ``producer --loop --latency-model``) stores the
model's JSON in the study's user attributes on first open, as ``StudyLatencyCache`` stores
measurements: a second worker sharing the study (another process, another machine on PostgreSQL)
needs no file and reuses it. A model fitted for another target or base network is refused with
one line (``LatencyModel.check``), and so is a second, different file for a study that holds one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from pipeline.errors import SweepError
from pipeline.messages import Target

if TYPE_CHECKING:
    from pipeline.latency import LatencyModel

#: Study user attribute holding the latency model (its JSON, parsed).
LATENCY_MODEL_ATTR = "latency_model"


def study_latency_model(study: optuna.Study, path: Path | None, target: Target,
                        model_name: str) -> "LatencyModel | None":
    """The study's latency model: the one in ``path`` (stored on first use), else the stored one,
    else None (no prediction: the gate measures)."""
    from pipeline.latency import LatencyModel, load_latency_model

    stored = study.user_attrs.get(LATENCY_MODEL_ATTR)
    if path is None:
        if stored is None:
            return None
        model = LatencyModel.from_dict(stored, source=f"the latency model stored in study {study.study_name!r}")
        model.check(target, model_name)
        return model
    model = load_latency_model(Path(path))
    model.check(target, model_name)
    given = json.loads(model.to_json())
    if stored is None:
        study.set_user_attr(LATENCY_MODEL_ATTR, given)
    elif stored != given:
        raise SweepError(f"study {study.study_name!r} already holds another latency model than "
                         f"{path}: leave out --latency-model to use the stored one, or give the "
                         "sweep another --study")
    return model
