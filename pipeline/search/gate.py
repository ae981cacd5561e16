"""Latency gate: measure the pruned architecture before retraining, skip retraining hopeless ones.

Latency depends on the architecture (kept channels per layer), the precision and the target, not
on the weights; so the pruned, untrained model is measured once, right after pruning. The gate
says "skip" when the latency misses the sweep's limit, or (rule ``dominated``, off by default)
when a finished trial is at least as fast and reached the best Top1 of the sweep so far, which
this slower architecture would have to beat to matter.

Measurements are cached by ``(arch_signature, backend, device, precision)`` in the study itself
(a study user attribute), so every worker sharing the study, on any machine, reuses them and the
cache needs no service of its own. ``FileLatencyCache`` serves the ``wandb agent`` path, which has
no study.

With a latency model (``pipeline.latency``), ``PredictingGate`` judges the pruned module itself:
no export, no compile, no device time. It records the prediction as ``Total_Latency_predicted``;
a model that goes on to retraining is still measured by the consumer, and that measured
``Total_Latency`` is what the record and the ranking use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import optuna

from pipeline.errors import SweepError
from pipeline.files import atomic_write_text
from pipeline.flow import PREDICTED, PREDICTED_METRIC
from pipeline.measure.noise import unranked_figures
from pipeline.messages import ArtifactRef, Job, ModelFacts, Target, TrialRecord
from pipeline.status import TrialStatus

from .config import GateOptions

if TYPE_CHECKING:
    from torch import nn

    from pipeline.latency import LatencyModel
    from pipeline.queue import ResultQueue

log = logging.getLogger(__name__)

#: measure(onnx_path, facts, target) -> metrics under the result names (Latency, Total_Latency, ...).
MeasureFn = Callable[[Path, ModelFacts, Target], dict[str, Any]]
_CACHE_PREFIX = "latency_cache:"
#: A latency model's prediction over its unpruned network's median (``LatencyModel.reference_ms``):
#: the predicted Relative_Latency, recorded beside the predicted ms.
PREDICTED_RELATIVE = "Relative_Latency_predicted"
#: The metrics a gate on a latency model's prediction may be on.
PREDICTED_GATE_METRICS = (PREDICTED_METRIC, "Relative_Latency")


def cache_key(facts: ModelFacts, target: Target) -> str:
    """The key of one architecture on one target at one precision."""
    text = "|".join([facts.arch_signature, target.backend, target.device, target.precision])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class LatencyCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, metrics: dict[str, Any]) -> None: ...


class StudyLatencyCache:
    """Cache in the study's user attributes: shared by every worker of the study."""

    def __init__(self, study: optuna.Study):
        self.study = study

    def get(self, key: str) -> dict[str, Any] | None:
        return self.study.user_attrs.get(_CACHE_PREFIX + key)

    def put(self, key: str, metrics: dict[str, Any]) -> None:
        self.study.set_user_attr(_CACHE_PREFIX + key, metrics)


class FileLatencyCache:
    """Cache in one JSON file (written atomically), for runs without a study."""

    _lock = threading.Lock()

    def __init__(self, path: Path):
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._load().get(key)

    def put(self, key: str, metrics: dict[str, Any]) -> None:
        with self._lock:
            data = self._load()
            data[key] = metrics
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data))


class GateRules:
    """The skip rules of the gates, on a latency however it was obtained: the limit, and
    (``dominated``) a finished trial at least as fast with the best Top1 so far."""

    def __init__(self, options: GateOptions, target: Target,
                 finished: Callable[[], list[TrialRecord]] | None = None,
                 accuracy_metric: str = "Top1"):
        self.options = options
        self.target = target
        self.finished = finished
        self.accuracy_metric = accuracy_metric
        #: What the gate learnt of the last architecture, recorded with a gated trial.
        self.metrics: dict[str, Any] = {}
        #: Fresh measurements made by this gate (cache hits and predictions excluded).
        self.measurements = 0

    def __call__(self, onnx_path: Path, facts: ModelFacts) -> str | None:
        """Why to skip retraining the exported architecture, or None (``produce``'s gate)."""
        raise NotImplementedError  # each gate obtains the latency its own way

    def reason(self, value: float | None = None, what: str = "") -> str | None:
        """Why to skip retraining on ``value`` (default: the measured ``metrics``), or None."""
        name, limit = self.options.metric, self.options.limit
        if value is None:
            value = self.metrics.get(name) if name else None
        if value is None or name is None:
            return None
        unit = _unit(name)
        if limit is not None and value > limit:
            return (f"gated: {what}{name} {value:.3f}{unit} of the pruned architecture "
                    f"({self.target.precision}) exceeds the target {limit:g}{unit}, so it was not "
                    "retrained")
        if self.options.dominated and self.finished is not None:
            return self._dominated(self.finished(), name, value)
        return None

    def _dominated(self, finished: list[TrialRecord], name: str, value: float) -> str | None:
        done = [r for r in finished if r.status == TrialStatus.OK
                and r.metrics.get(name) is not None and r.metrics.get(self.accuracy_metric) is not None]
        if not done:
            return None
        best = max(r.metrics[self.accuracy_metric] for r in done)
        for r in done:
            if r.metrics[name] <= value and r.metrics[self.accuracy_metric] >= best:
                return (f"gated: dominated by trial {r.number} ({name} {r.metrics[name]:.3f} <= "
                        f"{value:.3f}{_unit(name)} with the best {self.accuracy_metric} so far, "
                        f"{best:.2f}%)")
        return None


def _unit(metric: str) -> str:
    """`` ms`` after an absolute latency, `` x unpruned`` after Relative_Latency."""
    return " x unpruned" if metric == "Relative_Latency" else " ms"


class LatencyGate(GateRules):
    """``gate(onnx_path, facts)`` as ``pipeline.flow.produce`` calls it: a reason to skip, or None.

    After a call, ``metrics`` holds the (cached or fresh) measurement, so a gated trial still
    records its latency.
    """

    def __init__(self, options: GateOptions, target: Target, measure: MeasureFn,
                 cache: LatencyCache, finished: Callable[[], list[TrialRecord]] | None = None,
                 accuracy_metric: str = "Top1"):
        super().__init__(options, target, finished, accuracy_metric)
        self.measure = measure
        self.cache = cache

    def __call__(self, onnx_path: Path, facts: ModelFacts) -> str | None:
        key = cache_key(facts, self.target)
        cached = self.cache.get(key)
        if cached is None:
            cached = self.measure(Path(onnx_path), facts, self.target)
            self.measurements += 1
            # A noisy figure that was not timed again is not kept: the next trial measures anew.
            if not unranked_figures(cached, [self.options.metric or ""]):
                self.cache.put(key, cached)
        else:
            log.info("latency cache hit for architecture %s", facts.arch_signature[:40])
        self.metrics = dict(cached)
        if unranked_figures(self.metrics, [self.options.metric or ""]):
            log.warning("latency gate: %s of %s is noise and was not timed again (%s); not "
                        "gating on it",
                        self.options.metric, facts.arch_signature[:40], self.metrics["measurement_flag"])
            return None
        return self.reason()


class PredictingGate(GateRules):
    """The gate on a latency model's prediction: ``produce`` calls ``judge_module`` with the pruned
    module instead of exporting it (``pipeline.flow.ModuleGate``).

    ``metrics`` then holds ``{Total_Latency_predicted: ms}`` only: a gated trial records the
    prediction, never a measurement it did not make.
    """

    def __init__(self, options: GateOptions, target: Target, latency_model: "LatencyModel",
                 finished: Callable[[], list[TrialRecord]] | None = None,
                 accuracy_metric: str = "Top1"):
        if options.metric not in (None, *PREDICTED_GATE_METRICS):
            raise SweepError(f"the latency model predicts {PREDICTED_METRIC} (and its ratio to the "
                             f"unpruned network), but the gate is on {options.metric}: set the "
                             "sweep's gate: {metric: Relative_Latency} or {metric: Total_Latency}, "
                             "or leave out --latency-model")
        super().__init__(options, target, finished, accuracy_metric)
        self.latency_model = latency_model

    def __call__(self, onnx_path: Path, facts: ModelFacts) -> str | None:
        """An exported model is predicted from its ONNX file (callers without the module)."""
        return self._judge(self.latency_model.predict_onnx(Path(onnx_path)))

    def judge_module(self, model: "nn.Module", facts: ModelFacts) -> str | None:
        return self._judge(self.latency_model.predict_module(model))

    def _judge(self, predicted: float) -> str | None:
        relative = float(predicted) / self.latency_model.reference_ms
        self.metrics = {PREDICTED: round(float(predicted), 4), PREDICTED_RELATIVE: round(relative, 5)}
        return self.reason(relative if self.options.metric == "Relative_Latency" else predicted,
                           what="predicted ")


def local_measure(settings: Any, options: Any = None) -> MeasureFn:
    """Measure in this process with ``pipeline.measure.measure`` (no accuracy: latency only)."""

    def measure(onnx_path: Path, facts: ModelFacts, target: Target) -> dict[str, Any]:
        from pipeline.measure import measure as run_measure

        return run_measure(onnx_path, target, options=options).to_metrics()

    return measure


def queue_measure(queue: "ResultQueue", timeout: float, run_id: str = "gate",
                  reference_model: str = "", reference_shortcut: str = "A") -> MeasureFn:
    """Measure on the real target through the job queue (a consumer), latency only; with
    ``reference_model`` (the sweep's base network) the consumer also times the model in
    alternation with that unpruned network (``Relative_Latency``), which a gate on
    Relative_Latency confirms on."""

    def measure(onnx_path: Path, facts: ModelFacts, target: Target) -> dict[str, Any]:
        from pipeline.errors import BenchmarkError

        job = Job(job_id=uuid.uuid4().hex, run_id=f"{run_id}-{uuid.uuid4().hex[:8]}",
                  artifact=ArtifactRef(uri="", sha256="", size=0), target=target, model=facts,
                  eval_split="", reference_model=reference_model,
                  reference_shortcut=reference_shortcut)
        job = queue.submit(job, onnx_path)
        result = queue.wait_result(job.job_id, timeout)
        if result is None or not result.ok:
            why = "no consumer answered" if result is None else result.error
            raise BenchmarkError(f"latency gate could not measure {onnx_path.name} on "
                                 f"{target.name} ({why}): start a consumer for that target")
        return result.metrics

    return measure
