"""Model registry and specs, checkpoint loading and size counting for the built-in networks."""

from .checkpoint import canonical_name, default_checkpoint, load_checkpoint
from .counting import count_macs_params, deployed_params
from .registry import BUILTIN_NAMES, MODEL_NAMES, create_model, model_spec
from .spec import InputSpec, ModelSpec

__all__ = [
    "BUILTIN_NAMES",
    "MODEL_NAMES",
    "InputSpec",
    "ModelSpec",
    "canonical_name",
    "count_macs_params",
    "create_model",
    "deployed_params",
    "default_checkpoint",
    "load_checkpoint",
    "model_spec",
]
