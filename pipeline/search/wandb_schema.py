"""W&B's own verdict on a sweep mapping, from W&B's published validator (the ``sweeps`` package).

``sweeps.schema_violations_from_proposed_config`` checks a sweep against W&B's JSON schema
(``sweeps/config/schema.json``) plus the rules a schema cannot state (``min < max``,
probabilities summing to 1). Three adjustments keep it W&B's verdict rather than the 0.2.0
package's:

- keys W&B accepts that the 0.2.0 schema predates (``run_cap``, the launch keys ``job`` and
  ``image_uri``, hyperband's ``strict``) are removed first; the loader checks them itself (W&B's
  own hyperband code drops extra ``early_terminate`` keys the same way before validating);
- the deprecation notes (``log_uniform``, ``inv_log_uniform``, ``q_log_uniform``: bounds that are
  exponents) are warnings, as ``wandb sweep`` prints them, not refusals;
- a schema violation is reported at the key it concerns (``parameters.lr.min``), which the
  package's plain messages leave out.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Top-level keys W&B's service accepts that sweeps 0.2.0's schema.json does not list.
NEWER_TOP_LEVEL_KEYS = ("run_cap", "job", "image_uri")
#: ``early_terminate`` keys W&B reads that the 0.2.0 schema does not list.
NEWER_HYPERBAND_KEYS = ("strict",)


def _sweeps():
    """The ``sweeps`` modules, imported quietly (0.2.0 uses pydantic-1 config names under pydantic 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.config import schema
        from sweeps.params import PARAM_DEPRECATION_MAP

        import sweeps
    return sweeps, schema, PARAM_DEPRECATION_MAP


def wandb_violations(data: Mapping[str, Any], distributions: Mapping[str, str] | None = None
                     ) -> list[str]:
    """W&B's objections to ``data``, one line each, the key path first; deprecations only logged.

    ``distributions``: each parameter's distribution (explicit or inferred, as W&B infers it), so
    a parameter's problem is read against its own distribution's schema.
    """
    sweeps, schema, deprecations = _sweeps()
    doc = _without_newer_keys(data)
    located = {e.message: _locate(e, doc, distributions or {}, schema) for e in schema.validator.iter_errors(doc)}
    found: list[str] = []
    try:
        messages = sweeps.schema_violations_from_proposed_config(doc)
    except ValueError as exc:  # a parameter that is not a mapping: the package raises
        messages = [str(exc)]
    for message in messages:
        if any(message.endswith(note) for note in deprecations.values()):
            log.warning("W&B: %s", message)
        elif located.get(message, message) not in found:
            found.append(located.get(message, message))
    return found


def _without_newer_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(dict(data))
    for key in NEWER_TOP_LEVEL_KEYS:
        doc.pop(key, None)
    if isinstance(doc.get("early_terminate"), dict):
        for key in NEWER_HYPERBAND_KEYS:
            doc["early_terminate"].pop(key, None)
    return doc


def _locate(error: Any, doc: dict[str, Any], distributions: Mapping[str, str], schema: Any) -> str:
    """``path: message`` of the most specific cause of a schema error."""
    from jsonschema.exceptions import best_match

    cause = best_match(error.context) if error.context else error
    where = list(error.absolute_path)
    if len(where) == 2 and where[0] == "parameters" and where[1] in distributions:
        # "not valid under any of the given schemas": judge it by its own distribution's schema.
        cause = _parameter_cause(doc["parameters"][where[1]], distributions[where[1]], schema) or cause
    path = ".".join(str(p) for p in [*where, *cause.relative_path]) if cause is not error \
        else ".".join(str(p) for p in where)
    return f"{path}: {cause.message}" if path else cause.message


def _parameter_cause(spec: dict[str, Any], distribution: str, schema: Any) -> Any:
    """The error of ``spec`` against the schema(s) of its distribution, None if it has none."""
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import best_match

    errors = []
    for definition in schema.dereferenced_sweep_config_jsonschema["definitions"]["parameter"]["anyOf"]:
        branches = definition.get("anyOf", [definition])
        if any(distribution in b.get("properties", {}).get("distribution", {}).get("enum", ())
               for b in branches):
            errors += Draft7Validator(definition, format_checker=schema.format_checker).iter_errors(spec)
    return best_match(errors) if errors else None
