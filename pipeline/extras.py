"""Optional parts of edgeprune and the pip extra that installs each.

``pip install edgeprune`` alone runs ``edgeprune run``, ``bench``, the queue agents and local
sweeps; W&B tracking, PostgreSQL studies, reports and INT8 quantization need an extra. A missing
one is a user error naming the install command, not an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from pipeline.errors import UserError

#: import name -> (extra, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "wandb": ("wandb", "W&B tracking"),
    "psycopg": ("postgres", "a PostgreSQL study storage"),
    "matplotlib": ("report", "report and sensitivity plots"),
    "sklearn": ("report", "parameter importance in reports"),
    "nncf": ("int8", "INT8 quantization"),
}


class MissingExtraError(UserError):
    """An optional dependency is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` (a key of EXTRAS or a submodule of one), or say which extra installs it."""
    top = module.split(".", 1)[0]
    if importlib.util.find_spec(top) is None:
        extra, purpose = EXTRAS[top]
        raise MissingExtraError(f"the Python package {top!r} is not installed (used for {purpose}): "
                                f"pip install 'edgeprune[{extra}]'")
    return importlib.import_module(module)
