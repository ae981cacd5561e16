"""One settings object for every agent and command.

Values come from, in rising priority: defaults, environment variables (``EDGEPRUNE_*``), and
explicit overrides (CLI flags). Nothing else in the code base reads ``os.environ`` for edgeprune
settings.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError, shown
from .redact import redact_url

#: The shared folder's default place: beside the repository root (``../shared``).
_REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_SHARED = _REPO_ROOT.parent / "shared"

#: The default data set in ``<shared_dir>/data``: the official CIFAR-10 binary version, lossless.
DEFAULT_DATA_FILE = "cifar-10-binary.tar.gz"

#: Environment variable for each field; the CLI flag of the same name overrides it.
ENV_VARS: dict[str, str] = {
    "shared_dir": "EDGEPRUNE_SHARED",
    "data": "EDGEPRUNE_DATA",
    "models_dir": "EDGEPRUNE_MODELS",
    "cache_dir": "EDGEPRUNE_CACHE",
    "redis_url": "EDGEPRUNE_REDIS",
    "device": "EDGEPRUNE_DEVICE",
    "threads": "EDGEPRUNE_THREADS",
    "tracker": "EDGEPRUNE_TRACKER",
    # Set by `wandb agent` in the environment of each run it launches.
    "wandb_sweep_id": "WANDB_SWEEP_ID",
}


@dataclass(frozen=True)
class Settings:
    """Where data, weights and caches live, which queue to use and where to compute."""

    #: Folder with ``data/`` and ``models/`` (the project's ``../shared`` by default).
    shared_dir: Path | None = None
    #: Data set: CIFAR-10/100 binary version (``cifar-10-batches-bin`` folder or its .tar.gz), a
    #: ``cifar-10-batches-py`` folder, ``cifar-10-python.tar.gz`` or an image-folder tree (folder or
    #: .tar.gz). Default: ``<shared_dir>/data/cifar-10-binary.tar.gz`` (lossless CIFAR-10).
    data: Path | None = None
    #: Folder of pretrained checkpoints. Default: ``<shared_dir>/models``.
    models_dir: Path | None = None
    #: Decoded data sets, measurement caches. Default: ``~/.cache/edgeprune``.
    cache_dir: Path = Path("~/.cache/edgeprune").expanduser()
    #: Redis URL (``redis://``, ``rediss://``); None means the in-process queue (``pipeline.queue.InProcessQueue``).
    redis_url: str | None = None
    #: torch device for pruning and retraining: ``auto`` picks CUDA when present.
    device: str = "auto"
    #: CPU threads for torch (0: torch's default).
    threads: int = 0
    #: Experiment tracker for producer trials: auto (W&B under ``wandb agent``), none or wandb.
    tracker: str = "auto"
    #: The W&B sweep this process runs for, when ``wandb agent`` launched it.
    wandb_sweep_id: str | None = None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``) and non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_VARS[field.name])
            if raw:
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._coerce(values)

    @classmethod
    def _coerce(cls, values: dict[str, Any]) -> "Settings":
        for key in ("shared_dir", "data", "models_dir", "cache_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key]).expanduser()
        if "threads" in values:
            raw = values["threads"]
            try:
                values["threads"] = int(raw)
            except ValueError:
                values["threads"] = -1
            if values["threads"] < 0:
                raise UserError(
                    f"threads={shown(raw)} is not a whole number >= 0: set "
                    f"{ENV_VARS['threads']} or --threads to e.g. 2 (0: torch's default)"
                )
        if values.get("device") not in (None, "auto", "cpu"):
            _check_torch_device(str(values["device"]))
        if "shared_dir" not in values and _DEFAULT_SHARED.is_dir():
            values["shared_dir"] = _DEFAULT_SHARED
        return cls(**values)

    def replace(self, **overrides: Any) -> "Settings":
        """A copy with the non-None ``overrides`` applied."""
        values = dataclasses.asdict(self)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Settings._coerce(values)

    @property
    def data_path(self) -> Path:
        """The data set to use, or a UserError saying how to name one."""
        if self.data is not None:
            return self.data
        if self.shared_dir is not None:
            return self.shared_dir / "data" / DEFAULT_DATA_FILE
        raise UserError(
            "no data set given and no shared folder found: pass --data PATH (or set "
            f"{ENV_VARS['data']}) to a cifar-10-batches-bin or cifar-10-batches-py folder or an "
            "image-folder tree"
        )

    @property
    def checkpoints_dir(self) -> Path | None:
        """Folder of pretrained checkpoints, if any is known."""
        if self.models_dir is not None:
            return self.models_dir
        if self.shared_dir is not None:
            return self.shared_dir / "models"
        return None

    def tracker_kind(self) -> str:
        """``wandb`` or ``none``: ``auto`` means W&B exactly when ``wandb agent`` launched us."""
        if self.tracker == "auto":
            return "wandb" if self.wandb_sweep_id else "none"
        if self.tracker not in ("none", "wandb"):
            raise UserError(f"unknown tracker {self.tracker!r}: set {ENV_VARS['tracker']} or "
                            "--tracker to auto, none or wandb")
        return self.tracker

    def torch_device(self) -> str:
        """The torch device string: ``cuda`` when asked or available under ``auto``, else ``cpu``."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


#: Redis URL schemes the queue connects with (``pipeline.queue.client.connect``).
REDIS_SCHEMES = ("redis", "rediss")
_REDIS_FORM = "use redis://[:password@]host:port/db (db a whole number) or rediss:// for TLS"


def check_redis_url(url: str) -> str:
    """``url`` if it is a Redis URL the queue can use; otherwise a one-line UserError (password
    redacted) before anything connects: a unix socket, an unknown scheme, a bad port or a database
    that is not a whole number (redis-py would otherwise ignore it and use db 0)."""
    shown_url = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsed only to refuse a port that is not a number in range)
    except ValueError as exc:
        raise UserError(f"bad Redis URL {shown_url}: {exc}; {_REDIS_FORM}") from None
    if parts.scheme == "unix":
        raise UserError(f"Redis URL {shown_url}: unix sockets are not supported: {_REDIS_FORM}")
    if parts.scheme not in REDIS_SCHEMES or not parts.hostname:
        raise UserError(f"bad Redis URL {shown_url}: not redis://host...: {_REDIS_FORM}")
    db = parts.path.strip("/")
    query_db = urllib.parse.parse_qs(parts.query).get("db", [])
    for value in (db, *query_db):
        if value and not (value.isascii() and value.isdigit()):
            raise UserError(f"bad Redis URL {shown_url}: database {shown(value)} is not a whole "
                            f"number: {_REDIS_FORM}")
    return url


def _check_torch_device(device: str) -> None:
    """A UserError now, before any work, for a device torch cannot parse or this machine lacks."""
    import torch

    fix = "use --torch-device auto, cpu, cuda or cuda:N (or set EDGEPRUNE_DEVICE)"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"torch device {shown(device)} is not a device name: {fix}") from None
    if parsed.type != "cuda":
        raise UserError(f"torch device {shown(device)} is not supported: {fix}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"torch device {device}: this machine has no CUDA device (or torch was "
                        "built without CUDA): use --torch-device cpu or auto")
    if parsed.index is not None and parsed.index >= count:
        raise UserError(f"torch device {device}: this machine has {count} CUDA device(s): use "
                        f"cuda:0 to cuda:{count - 1}, or auto")
