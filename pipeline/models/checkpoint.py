"""Loading pretrained weights saved by akamaster's trainer, Distiller, or edgeprune itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import ModelError
from .registry import model_spec

if TYPE_CHECKING:
    from ..settings import Settings

#: Other spellings of our module names: Distiller's head is ``fc``, akamaster's option-B path ``shortcut``.
_ALIASES = ((re.compile(r"^fc\."), "linear."), (re.compile(r"\.shortcut\."), ".downsample."))


def canonical_name(name: str) -> str:
    """Our name for a parameter or module: without the ``module.`` prefix that DataParallel adds,
    and with Distiller's and akamaster's spellings (``fc.``, ``.shortcut.``) mapped onto ours, so
    checkpoints and Distiller's schedules name the same tensors."""
    name = name[len("module."):] if name.startswith("module.") else name
    for pattern, replacement in _ALIASES:
        name = pattern.sub(replacement, name)
    return name


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model``; any missing, extra or mis-shaped tensor is a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found: pass --checkpoint FILE or --models-dir DIR")
    try:
        # weights_only: a checkpoint is data; never run code from it.
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelError(f"checkpoint {path} cannot be read ({type(exc).__name__}): "
                         "pass a torch state dict saved with torch.save") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds no state dict: save {{'state_dict': model.state_dict()}}")
    state = {canonical_name(k): v for k, v in state.items()}
    # Compare in canonical names on both sides, so a network whose own modules are called
    # ``fc`` or ``shortcut`` (ResNet-8, ShuffleNetV2) loads its own checkpoint as well.
    own_state = model.state_dict()
    own_names = {canonical_name(k): k for k in own_state}
    own = {name: own_state[k] for name, k in own_names.items()}
    # Old checkpoints predate BatchNorm's step counter; it carries no weights.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    _check_class_count(model, state, path, shapes if not (missing or unexpected) else [])
    if missing or unexpected or shapes:
        detail = (f"missing {missing[:3]}" if missing else
                  f"unexpected {unexpected[:3]}" if unexpected else f"shape mismatch at {shapes[:3]}")
        raise ModelError(f"checkpoint {path} does not fit the model ({detail}): check --model and "
                         "--shortcut match the checkpoint")
    model.load_state_dict({own_names[k]: v for k, v in state.items()}, strict=False)


def _check_class_count(model: nn.Module, state: dict, path: Path, mismatched: list[str]) -> None:
    """A ModelError that says what to do when the only tensors that do not fit are the head's: the
    model was built for the data set's class count, the checkpoint was trained on another."""
    heads = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not heads or not mismatched:
        return
    head = f"{heads[-1]}.weight"
    if not set(mismatched) <= {head, f"{heads[-1]}.bias"} or head not in state:
        return
    built, trained = model.state_dict()[head].shape[0], state[head].shape[0]
    raise ModelError(f"the data set has {built} classes but checkpoint {path}'s head has {trained}: "
                     f"give --data a set of those {trained} classes, or --checkpoint a network trained "
                     f"on your {built} classes")


def default_checkpoint(name: str, settings: "Settings") -> Path | None:
    """The pretrained checkpoint for model ``name`` in the settings' models folder, if present."""
    folder = settings.checkpoints_dir
    if folder is None or not folder.is_dir():
        return None
    matches = sorted(folder.glob(model_spec(name).checkpoint_glob))
    return matches[0] if matches else None
