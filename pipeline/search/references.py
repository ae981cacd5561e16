"""The sweep's own reference points: the unpruned model (and the hand-picked schedule), measured once.

A report answers "how much faster than unpruned" only with an unpruned measurement on the same
target. So a sweep measures, once per (base model, checkpoint, target), the unpruned model and,
for ResNet56, Distiller's hand-picked filter schedule, with no retraining (epochs 0), through the
same queue and consumer as its trials. The figures are kept in the study's user attributes
(``reference:<key>:<name>``, like ``gate.StudyLatencyCache``), so every worker sharing the
study, a resumed sweep and ``edgeprune report`` read them without measuring again.

No retraining makes them the *latency* references; the fair *accuracy* comparison is the
unpruned model fine-tuned with the sweep's epochs, which only ``edgeprune baseline`` measures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from pipeline.baseline import UNPRUNED_SCHEDULE
from pipeline.progress import StageLines
from pipeline.status import TrialStatus

if TYPE_CHECKING:
    from pipeline.flow import RunConfig
    from pipeline.queue import ResultQueue
    from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: Study user attribute prefix of a stored reference: ``reference:<key>:<name>``.
REFERENCE_PREFIX = "reference:"
#: Where the hand-picked schedules live (the repository's schedule library).
SCHEDULES_DIR = Path(__file__).resolve().parents[2] / "schedules"
#: The hand-picked schedule measured beside the unpruned model, per base model (others: none).
HAND_PICKED = {"resnet56_cifar": "resnet56_filter_rank.yaml"}
#: Shown with every reference in the report.
NOTE = ("measured by the sweep itself with no retraining (epochs 0); the fair accuracy comparison, "
        "the unpruned model fine-tuned with the sweep's epochs, is not measured unless "
        "`edgeprune baseline --epochs N` ran (pass its baseline.json with --baselines)")


@dataclass
class ReferenceSpec:
    """One reference to measure: its name and schedule (a path, or YAML text)."""

    name: str
    schedule: Path | str


@dataclass
class StoredReference:
    """A measured reference as the study keeps it."""

    name: str
    key: str
    model: str
    target: dict[str, Any]
    schedule: str
    metrics: dict[str, Any]
    run_dir: str = ""
    epochs: int = 0
    eval_split: str = ""
    measured_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StoredReference":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def reference_specs(model: str) -> list[ReferenceSpec]:
    """The unpruned model, and the hand-picked schedule where the base model has one."""
    specs = [ReferenceSpec("unpruned", UNPRUNED_SCHEDULE)]
    hand_picked = SCHEDULES_DIR / HAND_PICKED[model] if model in HAND_PICKED else None
    if hand_picked is not None and hand_picked.is_file():
        specs.append(ReferenceSpec("hand-picked", hand_picked))
    return specs


def reference_key(base: "RunConfig", settings: "Settings") -> str:
    """The key of (base model, checkpoint, target): the checkpoint by file name and size, so
    workers on other machines (their own paths) share it."""
    from pipeline.models import default_checkpoint

    checkpoint = base.checkpoint or default_checkpoint(base.model, settings)
    identity = [Path(checkpoint).name, Path(checkpoint).stat().st_size] if checkpoint else None
    text = json.dumps([base.model, base.shortcut, identity, base.target.backend, base.target.device,
                       base.target.precision])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_config(base: "RunConfig", spec: ReferenceSpec) -> "RunConfig":
    """``base`` measuring ``spec`` as it is: no sweep overrides, no retraining, no distillation;
    the unpruned network also without adaptive BN (its statistics come from the whole train split,
    and re-estimating them on a few hundred images only makes them worse, as in ``pipeline.baseline``)."""
    recalibrate = 0 if spec.schedule == UNPRUNED_SCHEDULE else base.bn_recalibrate
    return dataclasses.replace(base, schedule=spec.schedule, overrides=(), epochs=0, kd_weight=0.0,
                               retrain_collapsed=True, bn_recalibrate=recalibrate,
                               params={"baseline": spec.name})


def measure_references(study: optuna.Study, base: "RunConfig", settings: "Settings",
                       queue: "ResultQueue", timeout: float, out_dir: Path,
                       stage_lines: bool = False) -> list[StoredReference]:
    """Measure the references the study does not hold yet for ``base``'s key; returns those
    measured now (none when all are stored). Each lands in ``out_dir/references/<key>-<name>``.

    A reference that fails is logged and not stored: the next sweep on the study tries again.
    """
    from pipeline.trial import run_trial

    key = reference_key(base, settings)
    measured = []
    for spec in reference_specs(base.model):
        attr = f"{REFERENCE_PREFIX}{key}:{spec.name}"
        if attr in study.user_attrs:
            continue
        run_dir = Path(out_dir) / "references" / f"{key}-{spec.name}"
        lines = StageLines(prefix=f"reference {spec.name}: ") if stage_lines else None
        done = run_trial(reference_config(base, spec), queue, settings, run_dir, timeout,
                         on_stage=lines.stage if lines else None)
        if done.status != TrialStatus.OK or done.result is None:
            why = done.result.error if done.result is not None and not done.result.ok else done.status
            log.warning("reference %s was not measured (%s); the next sweep on this study retries",
                        spec.name, why or done.produced.reason)
            continue
        stored = StoredReference(name=spec.name, key=key, model=base.model,
                                 target=base.target.to_dict(),
                                 schedule=str(spec.schedule) if isinstance(spec.schedule, Path) else "unpruned",
                                 metrics=_json_metrics(done.metrics()), run_dir=str(run_dir.resolve()),
                                 eval_split=base.eval_split)
        study.set_user_attr(attr, stored.to_dict())
        if lines is not None:
            lines.line(f"stored in the study ({_latency_text(stored.metrics)})")
        measured.append(stored)
    return measured


def stored_references(user_attrs: dict[str, Any]) -> list[StoredReference]:
    """Every reference a study holds, oldest first."""
    found = [StoredReference.from_dict(value) for name, value in user_attrs.items()
             if name.startswith(REFERENCE_PREFIX) and isinstance(value, dict)]
    return sorted(found, key=lambda r: r.measured_at)


def display_name(reference: StoredReference, several: bool) -> str:
    """``unpruned, 0 ep`` (the report's "unpruned" reference), with model and target when the
    study holds references of several keys."""
    name = f"{reference.name}, {reference.epochs} ep"
    if several:
        target = reference.target
        name += f" ({reference.model}, {target.get('backend')} {target.get('device')} {target.get('precision')})"
    return name


def speedup_text(references: list[StoredReference], metrics: dict[str, Any],
                 ranked: list[str]) -> str:
    """``"2.91x faster than unpruned resnet56_cifar (1 / Relative_Latency, timed in alternation)"``
    for a trial's metrics, with its noise flag when it has one; "" without a Relative_Latency.

    The figure is the trial's own ratio, never a reference's ms over the trial's: those were
    taken at different moments on a machine whose speed swings. ``references`` and ``ranked``
    are kept for the callers' signature; the ratio needs neither.
    """
    relative = metrics.get("Relative_Latency")
    if isinstance(relative, bool) or not isinstance(relative, (int, float)) or not relative > 0:
        return ""
    base = metrics.get("relative_reference_model") or metrics.get("relative_reference") or "network"
    flag = metrics.get("measurement_flag")
    return (f"{1 / relative:.2f}x faster than unpruned {base} (1 / Relative_Latency, timed in "
            f"alternation){'; noisy: ' + str(flag) if flag else ''}")


def _latency_text(metrics: dict[str, Any]) -> str:
    parts = [f"{m} {metrics[m]:.3f} ms" for m in ("Latency", "Total_Latency")
             if isinstance(metrics.get(m), (int, float))]
    return ", ".join(parts) or "no latency"


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Figures as a study attribute can hold them (numpy scalars as numbers)."""
    from .storage import json_safe

    return json_safe(metrics)


def load_references(dir_or_url: str | Path, study_name: str | None = None) -> list[StoredReference]:
    """The references stored in a sweep's study (its ``--out`` folder or storage URL)."""
    from .storage import stored_study

    study = stored_study(dir_or_url, study_name)
    return stored_references(study.user_attrs) if study is not None else []
