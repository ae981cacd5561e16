"""Sweep YAML in W&B's schema, read and checked into a ``SweepConfig``.

The file is the one ``wandb sweep`` takes. Our extension (several objectives, constraints, gate
options) lives in the constant parameter ``edgeprune`` (``parameters.edgeprune.value``): W&B's
schema forbids unknown top-level keys (``additionalProperties: false``) but accepts any constant
parameter value, so the same file stays valid for ``wandb sweep`` and the agent passes the
extension to the producer as ``--edgeprune={...}``, which ignores it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from pipeline.errors import SweepError
from pipeline.yaml_input import load_yaml, read_yaml_text

from .wandb_schema import wandb_violations

#: Reserved parameter holding our extension (see module docstring).
EXTENSION_PARAM = "edgeprune"

TOP_LEVEL_KEYS = frozenset({
    "program", "command", "method", "metric", "parameters", "early_terminate", "run_cap", "name",
    "description", "project", "entity", "apiVersion", "kind", "controller", "job", "image_uri",
})
METHODS = ("grid", "random", "bayes")
#: Most trials a sweep file may ask for (the same bound as `edgeprune sweep --trials`).
MAX_RUN_CAP = 1_000_000
Goal = Literal["minimize", "maximize"]
GOALS: tuple[Goal, ...] = ("minimize", "maximize")
#: W&B's command macros (wandb_agent / sdk.launch.sweeps.utils).
COMMAND_MACROS = frozenset({
    "env", "interpreter", "program", "args", "args_no_equals", "args_no_hyphens",
    "args_no_boolean_flags", "args_json", "args_json_file", "args_dict", "args_append_hydra",
    "args_override_hydra",
})
_ENVVAR_MACRO = re.compile(r"^\$\{envvar:[A-Za-z0-9_]+\}$")

#: distribution -> (required keys, optional keys); W&B infers the distribution when it is absent.
DISTRIBUTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "constant": (frozenset({"value"}), frozenset()),
    "categorical": (frozenset({"values"}), frozenset()),
    "categorical_w_probabilities": (frozenset({"values", "probabilities"}), frozenset()),
    "int_uniform": (frozenset({"min", "max"}), frozenset()),
    "uniform": (frozenset({"min", "max"}), frozenset()),
    "q_uniform": (frozenset({"min", "max"}), frozenset({"q"})),
    "log_uniform_values": (frozenset({"min", "max"}), frozenset()),
    "log_uniform": (frozenset({"min", "max"}), frozenset()),
    "q_log_uniform_values": (frozenset({"min", "max"}), frozenset({"q"})),
    "inv_log_uniform_values": (frozenset({"min", "max"}), frozenset()),
    "normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "log_normal": (frozenset(), frozenset({"mu", "sigma"})),
    "q_log_normal": (frozenset(), frozenset({"mu", "sigma", "q"})),
    "beta": (frozenset(), frozenset({"a", "b"})),
    "q_beta": (frozenset(), frozenset({"a", "b", "q"})),
}
GRID_DISTRIBUTIONS = ("categorical", "categorical_w_probabilities", "int_uniform", "q_uniform")
#: Fixes for W&B's validator's objections, by a phrase of its message.
_WANDB_FIXES = {
    "is not less than max": "give min < max (a fixed value is {value: X})",
    "do not sum to 1": "give probabilities that sum to 1",
    "are not the same length": "give one probability per value",
    "Additional properties are not allowed": "remove that key (W&B's schema does not have it)",
    "less than or equal to the minimum of": "use a value above that minimum",
    "is less than the minimum of": "use a value at or above that minimum",
}
#: A study name names a folder (runs/sweeps/<name>): one path component, no hidden or parent one.
_STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .,+=@-]{0,127}")
STUDY_NAME_FIX = ("use letters, digits, spaces and . _ - + = @ , (up to 128, not starting with "
                  "'.'), e.g. resnet56-rapid-latency")


def study_name_problem(name: str) -> str:
    """Why ``name`` cannot name a study (it becomes a folder under ``runs/sweeps``), or ''."""
    from pipeline.errors import shown

    if _STUDY_NAME.fullmatch(name) and ".." not in name and name == name.strip():
        return ""
    return (f"{shown(name)} is not a plain folder name (path separators, '..', control characters "
            "or a leading '.' or space would put the study elsewhere)")


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Objective:
    """One metric to optimise; ``target`` is W&B's ``metric.target`` (our latency gate limit)."""

    name: str
    goal: Goal = "minimize"
    target: float | None = None

    @property
    def minimize(self) -> bool:
        return self.goal == "minimize"

    def met(self, value: float) -> bool:
        """Whether ``value`` reaches ``target`` (always true without a target)."""
        if self.target is None:
            return True
        return value <= self.target if self.minimize else value >= self.target


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``, e.g. the accuracy floor ``Top1 >= 80``."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when satisfied, the amount of violation otherwise."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class ParamSpec:
    """One entry of ``parameters``, with its distribution made explicit."""

    name: str
    distribution: str
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    min: float | None = None
    max: float | None = None
    q: float = 1.0
    mu: float = 0.0
    sigma: float = 1.0
    a: float = 1.0
    b: float = 1.0

    @property
    def constant(self) -> bool:
        return self.distribution == "constant"


@dataclass(frozen=True)
class Hyperband:
    """W&B's ``early_terminate: {type: hyperband, ...}``.

    ``strict`` (W&B's default false): false judges a run by its best value so far, true by its
    value at the bracket epoch (W&B's "more aggressive" mode).
    """

    min_iter: int | None = None
    max_iter: int | None = None
    s: float | None = None
    eta: float = 3.0
    strict: bool = False

    def brackets(self, horizon: int) -> list[int]:
        """Epochs (1-based) at which runs are judged, up to ``horizon`` epochs.

        W&B's rounding (``sweeps.hyperband_stopping``): each bracket is the previous one divided
        (max_iter form) or multiplied (min_iter form) by eta, truncated to an integer, so
        max_iter 27, eta 2, s 3 gives 3, 6, 13. W&B loops ``range(s)``, which a non-integer s
        (valid in its schema) breaks; we take the whole part.
        """
        bands: list[int] = []
        if self.min_iter is not None:
            band = float(self.min_iter)
            while int(band) <= horizon:
                bands.append(int(band))
                band *= self.eta
            return bands
        assert self.max_iter is not None and self.s is not None
        band = float(self.max_iter)
        for _ in range(int(self.s)):
            band /= self.eta
            if band < 1:
                break
            bands.append(int(band))
        return sorted(b for b in set(bands) if b <= horizon)


@dataclass(frozen=True)
class GateOptions:
    """Latency gate (extension ``gate:``): which metric, its limit, the dominance rule."""

    metric: str | None = None
    limit: float | None = None
    dominated: bool = False

    @property
    def active(self) -> bool:
        return self.metric is not None and (self.limit is not None or self.dominated)


@dataclass(frozen=True)
class Fidelity:
    """Multi-fidelity search (extension ``fidelity:``; ``pipeline.search.fidelity``): every trial
    is a rapid one (prune, adaptive BN, Top1 on ``rapid`` val images, predicted latency); the best
    ``promote`` share of them is fine-tuned ``short_epochs`` and measured, and the best ``promote``
    share of those ``full_epochs`` (0: no full rung)."""

    rapid: int = 500
    short_epochs: int = 1
    promote: float = 0.25
    full_epochs: int = 0

    @property
    def rungs(self) -> list[int]:
        """The fine-tuning epochs of the promoted rungs, in order."""
        return [self.short_epochs] + ([self.full_epochs] if self.full_epochs else [])


@dataclass
class SweepConfig:
    """A checked sweep: W&B's fields plus our extension, with the raw mapping kept."""

    source: str
    method: str
    parameters: dict[str, ParamSpec]
    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    name: str = ""
    description: str = ""
    program: str = ""
    command: list[str] = field(default_factory=list)
    early_terminate: Hyperband | None = None
    #: ``median`` (our extension ``early_stop: median``) or ``hyperband`` or ``""``.
    early_stop_rule: str = ""
    run_cap: int | None = None
    project: str = ""
    entity: str = ""
    gate: GateOptions = field(default_factory=GateOptions)
    #: Model behind ``method: bayes`` in the local engine: ``gp`` (default) or ``tpe``.
    bayes_sampler: str = "gp"
    #: Multi-fidelity search (extension ``fidelity:``), or None: every trial at full fidelity.
    fidelity: Fidelity | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def searched(self) -> dict[str, ParamSpec]:
        """The parameters that vary (constants and the extension left out)."""
        return {n: p for n, p in self.parameters.items() if not p.constant}

    @property
    def ranked_metrics(self) -> list[str]:
        """The metrics trials are ranked or constrained by."""
        return [o.name for o in self.objectives] + [c.metric for c in self.constraints]

    @property
    def constants(self) -> dict[str, Any]:
        return {n: p.value for n, p in self.parameters.items()
                if p.constant and n != EXTENSION_PARAM}

    def command_option(self, flag: str) -> str | None:
        """The value given to ``flag`` in ``command`` (``--flag X`` or ``--flag=X``), if any."""
        for i, word in enumerate(self.command):
            if word == flag and i + 1 < len(self.command):
                return self.command[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
        return None


def load_sweep(source: Path | str | Mapping[str, Any]) -> SweepConfig:
    """Read and check a sweep YAML file (or YAML text, or an already parsed mapping)."""
    where, data = _read(source)
    return _Checker(where, data).check()


def _read(source: Path | str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(source, Mapping):
        return "sweep", dict(source)
    text, where = str(source), "sweep"
    if isinstance(source, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.is_file():
            raise SweepError(f"{path}: sweep file not found: give the path of a sweep YAML such "
                             "as sweeps/01_rapid_latency.yaml")
        text, where = read_yaml_text(path, SweepError), str(path)
    data = load_yaml(text, where, SweepError)
    if not isinstance(data, dict):
        raise SweepError(f"{where}: a sweep must be a mapping with method, metric and parameters: "
                         "see sweeps/01_rapid_latency.yaml")
    return where, data


class _Checker:
    """Checks one sweep mapping; every problem is one SweepError line naming the key and the fix."""

    def __init__(self, where: str, data: dict[str, Any]):
        self.where = where
        self.data = data

    def fail(self, key: str, problem: str, fix: str) -> SweepError:
        return SweepError(f"{self.where}: {key} {problem}: {fix}")

    def check(self) -> SweepConfig:
        data = self.data
        unknown = sorted(set(data) - TOP_LEVEL_KEYS)
        if unknown:
            raise self.fail(unknown[0], "is not a W&B sweep key",
                            f"remove it, or move our extensions under parameters.{EXTENSION_PARAM}"
                            f".value (allowed keys: {', '.join(sorted(TOP_LEVEL_KEYS))})")
        method = data.get("method")
        if method not in METHODS:
            raise self.fail("method", f"is {method!r}", f"use one of {', '.join(METHODS)}")
        params = self.parameters(data.get("parameters"))
        extension = self.extension(params.get(EXTENSION_PARAM))
        hyperband = self.early_terminate(data.get("early_terminate"))
        objectives = self.objectives(data.get("metric"), extension.get("metrics"),
                                     needed=method == "bayes" or hyperband is not None)
        # Ours above say what we need to read the file; W&B's validator has the last word on it.
        self.wandb_verdict(params)
        if method == "grid":
            for spec in params.values():
                if not spec.constant and spec.distribution not in GRID_DISTRIBUTIONS:
                    raise self.fail(f"parameters.{spec.name}", f"has distribution "
                                    f"{spec.distribution}, which a grid cannot enumerate",
                                    "give it values: [...] or int_uniform/q_uniform bounds (or use method: "
                                    "random/bayes)")
        rule = extension.get("early_stop", "hyperband" if hyperband else "")
        if rule not in ("", "median", "hyperband") or (rule == "hyperband" and not hyperband):
            raise self.fail(f"parameters.{EXTENSION_PARAM}.value.early_stop", f"is {rule!r}",
                            "use median, or hyperband together with early_terminate")
        run_cap = data.get("run_cap")
        if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool)
                                    or not 1 <= run_cap <= MAX_RUN_CAP):
            raise self.fail("run_cap", f"is {run_cap!r}", f"use a whole number from 1 to {MAX_RUN_CAP:,}, e.g. 20")
        command = data.get("command", [])
        self.command(command)
        for key in ("name", "description", "program", "project", "entity"):
            if key in data and not isinstance(data[key], str):
                raise self.fail(key, f"is {data[key]!r}", "give it as a string")
        if data.get("name"):
            problem = study_name_problem(data["name"])
            if problem:
                raise self.fail("name", problem, STUDY_NAME_FIX)
        constraints = [self.constraint(i, c) for i, c in enumerate(extension.get("constraints", []))]
        sampler = extension.get("sampler", "gp")
        if sampler not in ("gp", "tpe"):
            raise self.fail(f"parameters.{EXTENSION_PARAM}.value.sampler", f"is {sampler!r}",
                            "use gp (Gaussian process, the default) or tpe")
        return SweepConfig(
            source=self.where, method=method, parameters=params, objectives=objectives,
            constraints=constraints, name=data.get("name", ""),
            description=data.get("description", ""), program=data.get("program", ""),
            command=[str(c) for c in command], early_terminate=hyperband, early_stop_rule=rule,
            run_cap=run_cap, project=data.get("project", ""), entity=data.get("entity", ""),
            gate=self.gate(extension.get("gate", {}), objectives, constraints),
            bayes_sampler=sampler, fidelity=self.fidelity(extension.get("fidelity")), raw=data)

    def wandb_verdict(self, params: dict[str, ParamSpec]) -> None:
        """W&B's published validator over the whole file: its first objection, with a fix."""
        problems = wandb_violations(self.data, {n: p.distribution for n, p in params.items()})
        if problems:
            fix = next((f for hint, f in _WANDB_FIXES.items() if hint in problems[0]),
                       "change it to what W&B's sweep schema allows (sweeps package, schema.json)")
            raise SweepError(f"{self.where}: W&B's sweep validator refuses it: {problems[0]}: {fix}")

    # -- parameters -------------------------------------------------------------------------
    def parameters(self, raw: Any) -> dict[str, ParamSpec]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("parameters", "is missing or empty",
                            "add e.g. parameters: {filter_pruner_70_desired_sparsity: "
                            "{min: 0.1, max: 0.7}}")
        return {str(name): self.parameter(str(name), spec) for name, spec in raw.items()}

    def parameter(self, name: str, spec: Any) -> ParamSpec:
        key = f"parameters.{name}"
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", name):
            raise self.fail(key, "is not a valid parameter name",
                            "use letters, digits and underscores, starting with a letter")
        if not isinstance(spec, dict):
            raise self.fail(key, f"is {spec!r}", "give a mapping such as {value: 3}, "
                            "{values: [a, b]} or {min: 0.1, max: 0.9}")
        if "parameters" in spec:
            raise self.fail(key, "is a nested parameter dictionary, which edgeprune does not map",
                            "flatten it to <instance>_<key> names")
        dist = spec.get("distribution") or _infer_distribution(spec)
        if dist not in DISTRIBUTIONS:
            raise self.fail(f"{key}.distribution", f"is {dist!r}",
                            f"use one of {', '.join(sorted(DISTRIBUTIONS))}")
        required, optional = DISTRIBUTIONS[dist]
        allowed = required | optional | {"distribution"}
        extra = sorted(set(spec) - allowed)
        if extra:
            raise self.fail(f"{key}.{extra[0]}", f"does not belong to distribution {dist}",
                            f"allowed keys are {', '.join(sorted(allowed))}")
        missing = sorted(required - set(spec))
        if missing:
            raise self.fail(key, f"({dist}) lacks {missing[0]}", f"add {missing[0]}: ...")
        fields: dict[str, Any] = {"name": name, "distribution": dist, "value": spec.get("value")}
        for k in ("min", "max", "q", "mu", "sigma", "a", "b"):
            if k in spec:
                fields[k] = self.number(f"{key}.{k}", spec[k], integer=(dist == "int_uniform"
                                                                       and k in ("min", "max")))
        if "values" in spec:
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise self.fail(f"{key}.values", "must be a non-empty list", "e.g. values: [1, 2]")
            fields["values"] = tuple(values)
        if "probabilities" in spec:
            probs = spec["probabilities"]
            # Length, sign and sum are W&B's validator's to judge (wandb_verdict).
            if not isinstance(probs, list) or any(not _is_number(p) for p in probs):
                raise self.fail(f"{key}.probabilities", f"is {probs!r}", "give one non-negative "
                                f"number per value ({len(fields['values'])}) summing to 1")
            fields["probabilities"] = tuple(float(p) for p in probs)
        return ParamSpec(**fields)

    def number(self, key: str, value: Any, integer: bool) -> float | int:
        if not _is_number(value) or (integer and not isinstance(value, int)):
            kind = "a whole number" if integer else "a number"
            raise self.fail(key, f"is {value!r}", f"give {kind} (without quotes)")
        return value

    # -- metrics, constraints, extension ----------------------------------------------------
    def objective(self, key: str, raw: Any) -> Objective:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise self.fail(key, f"is {raw!r}", "give {name: Latency, goal: minimize}")
        extra = sorted(set(raw) - {"name", "goal", "target", "impute"})
        if extra:
            raise self.fail(f"{key}.{extra[0]}", "is not a metric key",
                            "use name, goal, target (impute)")
        goal = raw.get("goal", "minimize")
        if goal not in GOALS:
            raise self.fail(f"{key}.goal", f"is {goal!r}", "use minimize or maximize")
        target = raw.get("target")
        if target is not None:
            target = float(self.number(f"{key}.target", target, integer=False))
        return Objective(raw["name"], goal, target)

    def objectives(self, metric: Any, metrics: Any, needed: bool) -> list[Objective]:
        """The objectives; none for a grid or random sweep without ``metric`` (W&B allows it)."""
        if metrics is not None:
            if not isinstance(metrics, list) or not metrics:
                raise self.fail(f"parameters.{EXTENSION_PARAM}.value.metrics", "must be a "
                                "non-empty list", "e.g. [{name: Total_Latency, goal: minimize}, "
                                "{name: Top1, goal: maximize}]")
            found = [self.objective(f"parameters.{EXTENSION_PARAM}.value.metrics[{i}]", m)
                     for i, m in enumerate(metrics)]
            if len({o.name for o in found}) != len(found):
                raise self.fail(f"parameters.{EXTENSION_PARAM}.value.metrics", "names a metric "
                                "twice", "list each metric once")
            return found
        if metric is None and needed:
            raise self.fail("metric", "is missing (method bayes and early_terminate need it)",
                            "add metric: {name: Latency, goal: minimize}")
        return [] if metric is None else [self.objective("metric", metric)]

    def extension(self, spec: ParamSpec | None) -> dict[str, Any]:
        if spec is None:
            return {}
        key = f"parameters.{EXTENSION_PARAM}"
        if not spec.constant or not isinstance(spec.value, dict):
            raise self.fail(key, "is reserved for edgeprune's extension", "give it as "
                            "{value: {metrics: [...], constraints: [...]}} or rename the parameter")
        allowed = {"metrics", "constraints", "gate", "early_stop", "sampler", "fidelity"}
        extra = sorted(set(spec.value) - allowed)
        if extra:
            raise self.fail(f"{key}.value.{extra[0]}", "is not an edgeprune extension key",
                            f"use {', '.join(sorted(allowed))}")
        return spec.value

    def constraint(self, index: int, raw: Any) -> Constraint:
        match = _CONSTRAINT.match(str(raw))
        if not match or not _is_number(_to_float(match.group(3))):
            raise self.fail(f"parameters.{EXTENSION_PARAM}.value.constraints[{index}]",
                            f"is {raw!r}", "write it as '<metric> >= <number>' or "
                            "'<metric> <= <number>', e.g. 'Top1 >= 80'")
        return Constraint(match.group(1), match.group(2), float(match.group(3)))

    def gate(self, raw: Any, objectives: list[Objective],
             constraints: list[Constraint]) -> GateOptions:
        key = f"parameters.{EXTENSION_PARAM}.value.gate"
        if not isinstance(raw, dict) or set(raw) - {"metric", "limit", "dominated"}:
            raise self.fail(key, f"is {raw!r}", "give {metric: Latency, limit: 3.0, "
                            "dominated: false} (each optional)")
        latency = [o for o in objectives if o.minimize and "latency" in o.name.lower()]
        metric = raw.get("metric") or (latency[0].name if latency else None)
        limit = raw.get("limit")
        if limit is None and metric is not None:
            targets = [o.target for o in objectives if o.name == metric and o.target is not None]
            bounds = [c.bound for c in constraints if c.metric == metric and c.op == "<="]
            limit = min(targets + bounds) if targets + bounds else None
        return GateOptions(metric, None if limit is None else float(limit),
                           bool(raw.get("dominated", False)))

    def fidelity(self, raw: Any) -> Fidelity | None:
        if raw is None:
            return None
        key = f"parameters.{EXTENSION_PARAM}.value.fidelity"
        example = "{rapid: 500, short_epochs: 1, promote: 0.25, full_epochs: 10} (each optional)"
        if not isinstance(raw, dict) or set(raw) - {"rapid", "short_epochs", "promote", "full_epochs"}:
            raise self.fail(key, f"is {raw!r}", f"give {example}")
        # Any: each key's type follows its `integer` flag, which the checker cannot see.
        values: dict[str, Any] = {k: self.number(f"{key}.{k}", raw[k], integer=k != "promote") for k in raw}
        fidelity = Fidelity(**values)
        if fidelity.rapid < 10 or fidelity.short_epochs < 1 or fidelity.full_epochs < 0:
            raise self.fail(key, f"is {raw!r}", "use rapid >= 10 images, short_epochs >= 1 and "
                            "full_epochs >= 0 (0: no full rung)")
        if not 0 < fidelity.promote <= 1:
            raise self.fail(f"{key}.promote", f"is {fidelity.promote!r}",
                            "give the share of each rung promoted to the next, in (0, 1], e.g. 0.25")
        if fidelity.full_epochs and fidelity.full_epochs <= fidelity.short_epochs:
            raise self.fail(f"{key}.full_epochs", f"is {fidelity.full_epochs}",
                            f"give more than short_epochs ({fidelity.short_epochs}), or 0 for no full rung")
        return fidelity

    def early_terminate(self, raw: Any) -> Hyperband | None:
        if raw is None:
            return None
        key = "early_terminate"
        if not isinstance(raw, dict) or raw.get("type") != "hyperband":
            raise self.fail(f"{key}.type", f"is {raw!r}" if not isinstance(raw, dict) else
                            f"is {raw.get('type')!r}", "use type: hyperband")
        extra = sorted(set(raw) - {"type", "min_iter", "max_iter", "s", "eta", "strict"})
        if extra:
            raise self.fail(f"{key}.{extra[0]}", "is not a hyperband key",
                            "use min_iter, or max_iter and s; eta and strict optional")
        # Ranges (min_iter >= 1, eta > 1) are W&B's validator's (wandb_verdict); s may be a
        # non-integer in W&B's schema.
        values: dict[str, Any] = {k: self.number(f"{key}.{k}", raw[k], integer=k in ("min_iter", "max_iter"))
                                  for k in ("min_iter", "max_iter", "s", "eta") if k in raw}
        if "min_iter" not in values and not {"max_iter", "s"} <= set(values):
            raise self.fail(key, "needs min_iter, or max_iter together with s",
                            "add e.g. min_iter: 1")
        strict = raw.get("strict", Hyperband.strict)
        if not isinstance(strict, bool):
            raise self.fail(f"{key}.strict", f"is {strict!r}", "use true or false (W&B's default: false)")
        return Hyperband(strict=strict, **values)

    def command(self, command: Any) -> None:
        if not isinstance(command, list):
            raise self.fail("command", f"is {command!r}", "give a list such as "
                            "[${env}, edgeprune, producer, --schedule, X.yaml, ${args}]")
        for word in command:
            text = str(word)
            if (text.startswith("${") and text.endswith("}") and text[2:-1] not in COMMAND_MACROS
                    and not _ENVVAR_MACRO.match(text)):
                raise self.fail("command", f"uses unknown macro {text}", "use one of "
                                + ", ".join("${%s}" % m for m in sorted(COMMAND_MACROS))
                                + " or ${envvar:NAME}")


def _infer_distribution(spec: dict[str, Any]) -> str:
    """W&B's inference: value → constant, values (+ probabilities) → categorical, ints → int_uniform."""
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "min" in spec and "max" in spec:
        both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                       for k in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    return "<none: give value, values, or min and max>"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
