"""The queue is transport: it carries jobs and knows nothing of the work (issue 18)."""

from __future__ import annotations

import subprocess
import sys

from test_schedule_layering import PIPELINE, _imported_modules

#: What a queue module must never import: the pipeline's steps and the search that drives them.
FORBIDDEN = ("pipeline.flow", "pipeline.search", "pipeline.trial")


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def test_no_queue_module_imports_the_work():
    offenders = {str(path.relative_to(PIPELINE)): sorted(m for m in _imported_modules(path) if _forbidden(m))
                 for path in (PIPELINE / "queue").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_importing_the_queue_pulls_in_neither_flow_nor_search():
    code = ("import sys, pipeline.queue; "
            "print(sorted(m for m in sys.modules if m.startswith(('pipeline.flow', 'pipeline.search', "
            "'pipeline.trial'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PIPELINE.parent)
    assert out.stdout.strip() == "[]"


def test_the_scan_sees_the_producer_side_importing_the_queue():
    # The scan is only as good as its parser: the trial module's own relative import is found.
    assert "pipeline.queue.access" in _imported_modules(PIPELINE / "trial.py")
