"""Messages between agents, and the records they leave: plain dataclasses that travel as JSON.

Nothing here is ever pickled: a message that came over the queue is parsed from JSON into these
classes and nothing else, so a hostile message can at worst fail to parse. ``parse_checked``
also checks every field's type (pydantic), for messages from a source that is not trusted.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Type, TypeVar

from pydantic import TypeAdapter

from .status import JobStatus

T = TypeVar("T")


def _from_dict(cls: Type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Unknown keys are dropped, so a newer sender does not break an older reader.
    """
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # every caller passes a dataclass
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = hints.get(name)
        if f is None:
            continue
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None and isinstance(value, dict):
            value = _from_dict(nested, value)
        kwargs[name] = value
    return cls(**kwargs)


class JsonMessage:
    """Mixin: ``to_json``/``from_json`` and ``to_dict``/``from_dict`` for a dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # a mixin: every subclass is a dataclass

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: Type[T], data: dict[str, Any]) -> T:
        return _from_dict(cls, data)

    @classmethod
    def from_json(cls: Type[T], text: str | bytes) -> T:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} JSON must be an object, got {type(data).__name__}")
        return _from_dict(cls, data)


@dataclass
class Target(JsonMessage):
    """Where and how a model is measured."""

    backend: str = "openvino"  # openvino | onnxruntime
    device: str = "CPU"  # OpenVINO device name (CPU, GPU, NPU) or ORT provider family
    precision: str = "fp32"  # fp32 | bf16 | fp16 | int8 | auto (the device's default)

    @property
    def name(self) -> str:
        """Stream suffix and cache key, e.g. ``openvino-CPU``."""
        return f"{self.backend}-{self.device}"


@dataclass
class ArtifactRef(JsonMessage):
    """A claim check for a file that travels beside a message, never inside it."""

    uri: str  # redis://<key> (stored in Redis) or file:///abs/path
    sha256: str
    size: int


@dataclass
class ModelFacts(JsonMessage):
    """What a consumer needs to know to feed and judge a model."""

    input_shape: list[int] = field(default_factory=lambda: [1, 3, 32, 32])
    num_classes: int = 10
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    macs: int = 0
    #: Parameters of the deployed model, BatchNorm folded (``pipeline.models.count_macs_params``).
    params: int = 0
    #: Kept channels per pruned layer: equal signatures mean equal latency.
    arch_signature: str = ""


@dataclass
class Job(JsonMessage):
    """One model to measure on one target."""

    job_id: str
    run_id: str
    artifact: ArtifactRef
    target: Target = field(default_factory=Target)
    model: ModelFacts = field(default_factory=ModelFacts)
    schedule_yaml: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: Which split the consumer evaluates deployed accuracy on (val for search, test for reports);
    #: ``""`` skips deployed accuracy.
    eval_split: str = "test"
    #: Evaluate on the first N images of the split only (0: all).
    eval_subset: int = 0
    producer_host: str = ""
    created_at: float = field(default_factory=time.time)
    tracking_run_path: str = ""
    #: The unpruned network of the model's base (a ``pipeline.models.MODEL_NAMES`` name) and its
    #: shortcut: the consumer times the model in alternation with it (``Relative_Latency``,
    #: ``pipeline.flow.consume``); "" measures no ratio.
    reference_model: str = ""
    reference_shortcut: str = "A"


@dataclass
class Result(JsonMessage):
    """What a consumer measured for a job, or why it could not."""

    job_id: str
    run_id: str
    #: Any other value than JobStatus's fails the parse (``ValueError``).
    status: JobStatus
    #: Figures under the seed's names (Latency, Total_Latency, Throughput, Top1, Top5) and ours.
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    consumer: str = ""  # host:name of the consumer agent
    target: Target = field(default_factory=Target)
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        # from_json hands over the wire's string; pydantic (parse_checked) has already converted it.
        self.status = JobStatus(self.status)

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.OK


@dataclass
class TrialRecord(JsonMessage):
    """One finished (or failed) trial of a sweep, as stored and as reports read it."""

    number: int
    #: ok | collapsed | gated | early_stopped | failed | running
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    #: Wall seconds spent on the trial (pruning, retraining, export and measurement).
    compute_s: float = 0.0
    run_dir: str = ""


_NESTED: dict[tuple[str, str], type] = {
    ("Job", "artifact"): ArtifactRef,
    ("Job", "target"): Target,
    ("Job", "model"): ModelFacts,
    ("Result", "target"): Target,
}


@lru_cache(maxsize=None)
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def parse_checked(cls: Type[T], text: str | bytes, strict: bool = False) -> T:
    """``cls`` parsed from JSON with the type of every field, nested ones included, checked.

    Unknown keys are dropped as in ``from_json``; a wrong type or a missing field raises
    ``ValueError`` (pydantic's ``ValidationError``) naming the field. ``strict`` converts nothing
    (``"3"`` is no int, ``true`` no number).
    """
    key: type = cls  # a class is hashable: the cache's key
    adapter: TypeAdapter[T] = _adapter(key)
    return adapter.validate_json(text, strict=strict)
