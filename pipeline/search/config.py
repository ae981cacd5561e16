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
from typing import Any, Mapping

from pipeline.errors import SweepError
from pipeline.yaml_input import load_yaml, read_yaml_text

#: Reserved parameter holding our extension (see module docstring).
EXTENSION_PARAM = "edgeprune"

TOP_LEVEL_KEYS = frozenset({
    "program", "command", "method", "metric", "parameters", "early_terminate", "run_cap", "name",
    "description", "project", "entity", "apiVersion", "kind", "controller", "job", "image_uri",
})
METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
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
_RANGED = {"int_uniform", "uniform", "q_uniform", "log_uniform_values", "log_uniform",
           "q_log_uniform_values", "inv_log_uniform_values"}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Objective:
    """One metric to optimise; ``target`` is W&B's ``metric.target`` (our latency gate limit)."""

    name: str
    goal: str = "minimize"
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
    """W&B's ``early_terminate: {type: hyperband, ...}``."""

    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = False

    def brackets(self, horizon: int) -> list[int]:
        """Epochs (1-based) at which runs are judged, up to ``horizon`` epochs."""
        if self.min_iter is not None:
            epochs, k = [], 0
            while (e := int(round(self.min_iter * self.eta ** k))) <= horizon:
                epochs.append(e)
                k += 1
            return epochs
        assert self.max_iter is not None and self.s is not None
        found = {int(round(self.max_iter / self.eta ** k)) for k in range(1, int(self.s) + 1)}
        return sorted(e for e in found if 1 <= e <= horizon)


@dataclass(frozen=True)
class GateOptions:
    """Latency gate (extension ``gate:``): which metric, its limit, the dominance rule."""

    metric: str | None = None
    limit: float | None = None
    dominated: bool = False

    @property
    def active(self) -> bool:
        return self.metric is not None and (self.limit is not None or self.dominated)


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
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def searched(self) -> dict[str, ParamSpec]:
        """The parameters that vary (constants and the extension left out)."""
        return {n: p for n, p in self.parameters.items() if not p.constant}

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
        objectives = self.objectives(data.get("metric"), extension.get("metrics"))
        if method == "grid":
            for spec in params.values():
                if not spec.constant and spec.distribution not in GRID_DISTRIBUTIONS:
                    raise self.fail(f"parameters.{spec.name}", f"has distribution "
                                    f"{spec.distribution}, which a grid cannot enumerate",
                                    "give it values: [...] or int_uniform/q_uniform bounds (or use method: "
                                    "random/bayes)")
        hyperband = self.early_terminate(data.get("early_terminate"))
        rule = extension.get("early_stop", "hyperband" if hyperband else "")
        if rule not in ("", "median", "hyperband") or (rule == "hyperband" and not hyperband):
            raise self.fail(f"parameters.{EXTENSION_PARAM}.value.early_stop", f"is {rule!r}",
                            "use median, or hyperband together with early_terminate")
        run_cap = data.get("run_cap")
        if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool)
                                    or run_cap < 1):
            raise self.fail("run_cap", f"is {run_cap!r}", "use a whole number >= 1, e.g. 20")
        command = data.get("command", [])
        self.command(command)
        for key in ("name", "description", "program", "project", "entity"):
            if key in data and not isinstance(data[key], str):
                raise self.fail(key, f"is {data[key]!r}", "give it as a string")
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
            bayes_sampler=sampler, raw=data)

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
            if (not isinstance(probs, list) or len(probs) != len(fields["values"])
                    or any(not _is_number(p) or p < 0 for p in probs)
                    or not math.isclose(sum(probs), 1.0, abs_tol=1e-6)):
                raise self.fail(f"{key}.probabilities", f"is {probs!r}", "give one non-negative "
                                f"number per value ({len(fields['values'])}) summing to 1")
            fields["probabilities"] = tuple(float(p) for p in probs)
        spec_out = ParamSpec(**fields)
        self.check_range(key, spec_out)
        return spec_out

    def check_range(self, key: str, spec: ParamSpec) -> None:
        if spec.distribution in _RANGED:
            assert spec.min is not None and spec.max is not None
            if spec.min > spec.max:
                raise self.fail(key, f"has min {spec.min:g} > max {spec.max:g}",
                                "swap them or fix the bound")
            if spec.distribution in ("log_uniform_values", "q_log_uniform_values",
                                     "inv_log_uniform_values") and spec.min <= 0:
                raise self.fail(f"{key}.min", f"is {spec.min:g} but {spec.distribution} needs "
                                "positive values", "use a min > 0 such as 1e-4")
        if spec.q <= 0:
            raise self.fail(f"{key}.q", f"is {spec.q:g}", "use a positive step such as 0.05")
        if spec.sigma < 0:
            raise self.fail(f"{key}.sigma", f"is {spec.sigma:g}", "use a sigma >= 0")

    def number(self, key: str, value: Any, integer: bool) -> float | int:
        if not _is_number(value) or (integer and not isinstance(value, int)):
            kind = "a whole number" if integer else "a number"
            raise self.fail(key, f"is {value!r}", f"give {kind} (without quotes)")
        return value

    # -- metrics, constraints, extension ----------------------------------------------------
    def objective(self, key: str, raw: Any) -> Objective:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise self.fail(key, f"is {raw!r}", "give {name: Latency, goal: minimize}")
        extra = sorted(set(raw) - {"name", "goal", "target", "impute", "impute_while_running"})
        if extra:
            raise self.fail(f"{key}.{extra[0]}", "is not a metric key",
                            "use name, goal, target (impute, impute_while_running)")
        goal = raw.get("goal", "minimize")
        if goal not in GOALS:
            raise self.fail(f"{key}.goal", f"is {goal!r}", "use minimize or maximize")
        target = raw.get("target")
        if target is not None:
            target = float(self.number(f"{key}.target", target, integer=False))
        return Objective(raw["name"], goal, target)

    def objectives(self, metric: Any, metrics: Any) -> list[Objective]:
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
        if metric is None:
            raise self.fail("metric", "is missing", "add metric: {name: Latency, goal: minimize}")
        return [self.objective("metric", metric)]

    def extension(self, spec: ParamSpec | None) -> dict[str, Any]:
        if spec is None:
            return {}
        key = f"parameters.{EXTENSION_PARAM}"
        if not spec.constant or not isinstance(spec.value, dict):
            raise self.fail(key, "is reserved for edgeprune's extension", "give it as "
                            "{value: {metrics: [...], constraints: [...]}} or rename the parameter")
        allowed = {"metrics", "constraints", "gate", "early_stop", "sampler"}
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
        values = {k: self.number(f"{key}.{k}", raw[k], integer=k != "eta")
                  for k in ("min_iter", "max_iter", "s", "eta") if k in raw}
        if "min_iter" not in values and not {"max_iter", "s"} <= set(values):
            raise self.fail(key, "needs min_iter, or max_iter together with s",
                            "add e.g. min_iter: 1")
        if values.get("min_iter", 1) < 1:
            raise self.fail(f"{key}.min_iter", f"is {values['min_iter']}", "use 1 or more")
        if values.get("eta", 3) <= 1:
            raise self.fail(f"{key}.eta", f"is {values['eta']}", "use a number > 1 such as 3")
        return Hyperband(strict=bool(raw.get("strict", False)), **values)

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
