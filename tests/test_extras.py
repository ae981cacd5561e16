"""Optional dependencies: each is declared as a pip extra, and a missing one names its extra."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.extras import EXTRAS, MissingExtraError, require

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
# Import name -> distribution name where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_optional_import_is_an_extra_and_not_a_core_dependency():
    extras = PYPROJECT["project"]["optional-dependencies"]
    core = _names(PYPROJECT["project"]["dependencies"])
    for module, (extra, _) in EXTRAS.items():
        distribution = DISTRIBUTIONS.get(module, module)
        assert distribution in _names(extras[extra]), (module, extra)
        assert distribution not in core, f"{distribution} is optional but also a core dependency"
    assert "edgeprune[all]" in extras["test"]


def test_require_imports_an_installed_extra():
    assert require("matplotlib.pyplot").__name__ == "matplotlib.pyplot"


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(EXTRAS, "edgeprune_no_such_module", ("report", "a test"))
    monkeypatch.delitem(sys.modules, "edgeprune_no_such_module", raising=False)
    with pytest.raises(MissingExtraError) as error:
        require("edgeprune_no_such_module")
    assert str(error.value) == ("the Python package 'edgeprune_no_such_module' is not installed "
                                "(used for a test): pip install 'edgeprune[report]'")
