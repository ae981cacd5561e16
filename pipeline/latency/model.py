"""``LatencyModel``: a fitted predictor of Total_Latency (ms) for one base model on one target.

It is a linear function of an architecture's layer features (features.py), fitted on whole-model
measurements (profiling.py); it is only valid for the target (backend, device, precision) and the
base model it was profiled for, which ``check`` enforces. JSON on disk, written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..errors import UserError
from ..files import atomic_write_text, require_input_file
from ..messages import Target
from .features import FeatureSpec, group_of
from .shapes import LayerShape, shapes_of_module, shapes_of_onnx

#: Version of the JSON layout; a file of another version is refused with the fix.
FORMAT_VERSION = 2
#: Bounds of a latency model's fields when read: a SIMD block in channels, a time or a
#: coefficient in ms (a CIFAR network runs in well under a second per image).
MAX_SIMD_BLOCK = 1024
MAX_MS = 1e6
TARGET_BACKENDS = ("openvino", "onnxruntime")


class LatencyModelError(UserError):
    """A latency model file that cannot be read, or that does not fit the target or model asked."""


def _target_text(target: Target) -> str:
    return f"{target.backend}/{target.device}/{target.precision}"


@dataclass
class FitInfo:
    """How a latency model was fitted, and how well it predicts."""

    n_architectures: int = 0
    n_measurements: int = 0
    #: Absolute relative error of the fit in sample, and leave-one-out (fit.py): median and p90.
    residual_median: float = 0.0
    residual_p90: float = 0.0
    loo_median: float = 0.0
    loo_p90: float = 0.0
    #: The measurements' own noise, below which no prediction error can be told apart: median
    #: |Relative_Latency - 1| of the unpruned model against itself, or without Relative_Latency
    #: median |ratio - 1| of consecutive measurements of the unpruned model.
    noise_floor: float = 0.0
    #: Samples (indices into ``ratios``) left out of the fit as spoiled measurements.
    outliers: list[int] = field(default_factory=list)
    #: Leave-one-out median error per SIMD block tried (the chosen one is the lowest).
    block_errors: dict[str, float] = field(default_factory=dict)
    #: How measurements were normalised against the machine's drift.
    normalisation: str = ""
    machine: str = ""
    device_name: str = ""
    engine_version: str = ""
    date: str = ""
    seconds: float = 0.0
    #: The architectures (``random_schedules(model_name, n_architectures - 1, seed, round_choices)``)
    #: and their measured ratios to the unpruned model (the unpruned one first): enough to refit.
    seed: int = 0
    round_choices: list[int] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


@dataclass
class LatencyModel:
    """Total_Latency (ms) = coefficients . features(architecture); see features.py for the terms."""

    target: Target
    model_name: str
    groups: list[str]
    simd_block: int
    coefficients: list[float]
    #: Median Total_Latency of the unpruned model over the profile (ms): predictions are on this
    #: scale, and ``predict(...) / reference_ms`` is the predicted ratio to the unpruned model.
    reference_ms: float
    fit: FitInfo = field(default_factory=FitInfo)
    version: int = FORMAT_VERSION
    #: Where it was loaded from (not stored): named in error messages.
    source: str = field(default="the latency model", compare=False)

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(tuple(self.groups), self.simd_block)

    @property
    def feature_names(self) -> list[str]:
        return self.spec.names

    def predict(self, shapes: Sequence[LayerShape]) -> float:
        """Predicted Total_Latency (ms) of the architecture made of ``shapes``."""
        unknown = sorted({group_of(s) for s in shapes} - set(self.groups))
        if unknown:
            raise LatencyModelError(
                f"{self.source} knows layers at {', '.join(self.groups)}, not {', '.join(unknown)}: "
                f"the architecture is not a pruned {self.model_name} at its input size; profile it "
                "with `edgeprune latency profile`")
        return float(self.spec.vector(shapes) @ np.asarray(self.coefficients))

    def predict_module(self, model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> float:
        """Predicted Total_Latency (ms) of a (pruned) PyTorch model, without exporting it."""
        return self.predict(shapes_of_module(model, input_shape))

    def predict_onnx(self, path: Path | str) -> float:
        """Predicted Total_Latency (ms) of an exported ONNX model (unchecked: a search's gate
        prices its own pruned models; `latency predict` calls ``check_architecture`` first)."""
        return self.predict(shapes_of_onnx(path))

    def check_architecture(self, shapes: Sequence[LayerShape], source: str) -> None:
        """A one-line LatencyModelError unless ``shapes`` can be a pruned ``model_name`` as the
        profile drew them: the same input and classes, and a layer count between the base's with
        the most blocks the profile removes and the base's own (another network, such as a
        ResNet20 priced by a ResNet56 model, lies outside)."""
        low, high, ends = _architecture_range(self.model_name)
        count = len(shapes)
        same_ends = bool(shapes) and _ends(shapes) == ends
        if same_ends and low <= count <= high:
            return
        what = (f"{count} layers" if same_ends else
                "another input or number of classes" if shapes else "no conv or linear layer")
        raise LatencyModelError(
            f"{source} is not a pruned {self.model_name} as {self.source} was profiled ({what}; a "
            f"pruned {self.model_name} has {low} to {high} conv and linear layers, input "
            f"{ends[0]} channels, {ends[1]} classes): price it with a latency model of its own "
            "network (`edgeprune latency profile --model NAME`)")

    def check(self, target: Target, model_name: str | None = None) -> None:
        """A one-line LatencyModelError when this model was profiled for another target
        (backend, device or precision) or another base model than ``model_name``."""
        same_target = (target.backend, target.device, target.precision) == (
            self.target.backend, self.target.device, self.target.precision)
        if same_target and (model_name is None or model_name == self.model_name):
            return
        name = model_name or self.model_name
        raise LatencyModelError(
            f"{self.source} was profiled on {_target_text(self.target)} for {self.model_name}, not "
            f"{_target_text(target)} for {name}: profile this target with `edgeprune latency profile "
            f"--model {name} --backend {target.backend} --device {target.device} --precision "
            f"{target.precision} --out lm.json`")

    def _check_fields(self) -> None:
        """A ValueError naming the first field out of range: a hand-edited or damaged file must
        not predict NaN, infinity, a negative time or divide by zero."""
        from ..models import MODEL_NAMES

        if self.model_name not in MODEL_NAMES:
            raise ValueError(f"model_name {self.model_name!r} is not one of {', '.join(MODEL_NAMES)}")
        if self.target.backend not in TARGET_BACKENDS:
            raise ValueError(f"target.backend {self.target.backend!r} is not one of {', '.join(TARGET_BACKENDS)}")
        if not self.groups:
            raise ValueError("groups is empty")
        if not 1 <= self.simd_block <= MAX_SIMD_BLOCK:
            raise ValueError(f"simd_block {self.simd_block} is not in 1..{MAX_SIMD_BLOCK}")
        if not (math.isfinite(self.reference_ms) and 0 < self.reference_ms <= MAX_MS):
            raise ValueError(f"reference_ms {self.reference_ms!r} is not a time in (0, {MAX_MS:g}] ms")
        if len(self.coefficients) != len(self.feature_names):
            raise ValueError(f"{len(self.coefficients)} coefficients for {len(self.feature_names)} features")
        bad = [c for c in self.coefficients if not (math.isfinite(c) and 0 <= c <= MAX_MS)]
        if bad:  # the fit is non-negative least squares: every term adds time
            raise ValueError(f"coefficients hold {bad[0]!r}, not a number in [0, {MAX_MS:g}]")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        data["feature_names"] = self.feature_names
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the latency model") -> "LatencyModel":
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, this edgeprune reads "
                                 f"{FORMAT_VERSION}")
            fit_fields = {f.name for f in dataclasses.fields(FitInfo)}
            model = cls(target=Target(**data["target"]), model_name=str(data["model_name"]),
                        groups=[str(g) for g in data["groups"]], simd_block=int(data["simd_block"]),
                        coefficients=[float(c) for c in data["coefficients"]],
                        reference_ms=float(data["reference_ms"]),
                        fit=FitInfo(**{k: v for k, v in data.get("fit", {}).items() if k in fit_fields}),
                        source=source)
            model._check_fields()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise LatencyModelError(f"{source} is not a latency model ({what}): write it again "
                                    "with `edgeprune latency profile --out ...`") from None
        return model

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "the latency model") -> "LatencyModel":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LatencyModelError(f"{source} is not JSON ({exc}): write it again with "
                                    "`edgeprune latency profile --out ...`") from None
        if not isinstance(data, dict):
            raise LatencyModelError(f"{source} holds a JSON {type(data).__name__}, not a latency "
                                    "model: write it again with `edgeprune latency profile --out ...`")
        return cls.from_dict(data, source)

    def save(self, path: Path | str) -> Path:
        """Write the model to ``path`` as JSON (atomically)."""
        return atomic_write_text(Path(path), self.to_json() + "\n")


@dataclass(frozen=True)
class LatencyModels:
    """The latency models of one search, at most one per target: a sweep whose trials run at
    several precisions predicts each trial with the model of its own precision."""

    models: tuple[LatencyModel, ...]

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for model in self.models:
            key = _target_text(model.target)
            if key in seen:
                raise LatencyModelError(f"{seen[key]} and {model.source} are both latency models of "
                                        f"{key}: give one --latency-model per target")
            seen[key] = model.source

    def for_target(self, target: Target) -> LatencyModel | None:
        """The model profiled on ``target`` (backend, device and precision), or None."""
        return next((m for m in self.models if _target_text(m.target) == _target_text(target)), None)

    def require(self, target: Target, model_name: str) -> LatencyModel:
        """The model of ``target``; a one-line LatencyModelError with the profile command if none."""
        model = self.for_target(target)
        if model is None and len(self.models) == 1:
            self.models[0].check(target, model_name)  # one model: say what it was profiled for
        if model is None:
            held = ", ".join(f"{m.source} ({_target_text(m.target)})" for m in self.models) or "none"
            raise LatencyModelError(
                f"no latency model of {_target_text(target)} for {model_name} (given: {held}): profile "
                f"it with `edgeprune latency profile --model {model_name} --backend {target.backend} "
                f"--device {target.device} --precision {target.precision} --out lm.json` and pass "
                "that file with another --latency-model")
        return model

    def check(self, target: Target, model_name: str, precisions: Sequence[str]) -> None:
        """A one-line LatencyModelError unless every model is of ``model_name`` on ``target``'s
        backend and device at one of ``precisions`` (those the search's trials can run at)."""
        for model in self.models:
            if model.target.precision in precisions:
                model.check(dataclasses.replace(target, precision=model.target.precision), model_name)
            elif len(precisions) == 1:
                model.check(dataclasses.replace(target, precision=precisions[0]), model_name)
            else:
                raise LatencyModelError(
                    f"{model.source} was profiled at {model.target.precision}, a precision this "
                    f"search's trials never run at ({', '.join(precisions)}): leave it out or add "
                    "that precision to the sweep's `precision` parameter")


def _ends(shapes: Sequence[LayerShape]) -> tuple[int, int]:
    """Input channels of the first layer and outputs of the last (the classes)."""
    return shapes[0].in_ch, shapes[-1].out_ch


def _architecture_range(model_name: str) -> tuple[int, int, tuple[int, int]]:
    """(fewest, most) layers of a pruned ``model_name`` as profiled (``random_schedule`` removes
    up to half its identity blocks, two convs each), and its ``_ends``."""
    from ..models import create_model
    from ..pruning.blocks import identity_blocks

    base = create_model(model_name)
    shapes = shapes_of_module(base)
    return len(shapes) - 2 * (len(identity_blocks(base)) // 2), len(shapes), _ends(shapes)


def load_latency_model(path: Path | str) -> LatencyModel:
    """The latency model in ``path``; a missing or unreadable file is one LatencyModelError line."""
    path = Path(path)
    # A FIFO or a device would block or never end: named as what it is, never read.
    require_input_file(path, "latency model", "make one with `edgeprune latency profile --out PATH`",
                       LatencyModelError)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = "no such file" if isinstance(exc, FileNotFoundError) else type(exc).__name__
        raise LatencyModelError(f"{path}: cannot read the latency model ({why}): make one with "
                                "`edgeprune latency profile --out PATH`") from None
    return LatencyModel.from_json(text, str(path))


def format_summary(model: LatencyModel) -> str:
    """A few lines on what ``model`` is, how it was fitted and how well it predicts."""
    fit = model.fit
    terms = ", ".join(f"{name} {c:.4g}" for name, c in zip(model.feature_names, model.coefficients) if c)
    return "\n".join([
        f"latency model of {model.model_name} on {_target_text(model.target)} "
        f"({fit.device_name or 'unknown device'}, {model.target.backend} {fit.engine_version})",
        f"fitted on {fit.n_architectures} architectures ({fit.n_measurements} measurements, "
        f"{fit.seconds:.0f} s; {len(fit.outliers)} left out as spoiled) on {fit.machine}, {fit.date}",
        f"unpruned Total_Latency {model.reference_ms:.4f} ms (median); channels padded to "
        f"{model.simd_block} (leave-one-out error by block: {fit.block_errors})",
        f"abs. relative error: in sample median {fit.residual_median:.1%} p90 {fit.residual_p90:.1%}; "
        f"leave-one-out median {fit.loo_median:.1%} p90 {fit.loo_p90:.1%}; noise floor "
        f"{fit.noise_floor:.1%} (the unpruned model against itself)",
        f"normalisation: {fit.normalisation}",
        f"non-zero terms (ms per layer / MMAC / padding MMAC): {terms}",
    ])
