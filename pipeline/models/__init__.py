"""Model registry, checkpoint loading and size counting for the CIFAR ResNets."""

from .checkpoint import canonical_name, default_checkpoint, load_checkpoint
from .counting import count_macs_params, deployed_params
from .registry import MODEL_NAMES, create_model

__all__ = [
    "MODEL_NAMES",
    "canonical_name",
    "count_macs_params",
    "create_model",
    "deployed_params",
    "default_checkpoint",
    "load_checkpoint",
]
