"""The schedule package is a leaf: pruning imports it, never the other way round (issue 18)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (lazy and TYPE_CHECKING imports too), absolute."""
    package = ["pipeline", *path.relative_to(PIPELINE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_no_schedule_module_imports_pruning():
    offenders = {str(path.relative_to(PIPELINE)): sorted(m for m in _imported_modules(path)
                                                          if m.startswith("pipeline.pruning"))
                 for path in (PIPELINE / "schedule").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_importing_the_schedule_pulls_in_neither_pruning_nor_torch():
    code = ("import sys, pipeline.schedule; "
            "print(sorted(m for m in sys.modules if m.startswith('pipeline.pruning') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PIPELINE.parent)
    assert out.stdout.strip() == "[]"


def test_the_scan_sees_relative_imports():
    # The check above is only as good as its parser: pruning's own import of the schedule is found.
    assert "pipeline.schedule.args" in _imported_modules(PIPELINE / "pruning" / "registry.py")
