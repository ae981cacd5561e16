"""Experiment tracking for a producer's trial: W&B, or nothing.

Both trackers follow ``pipeline.trial.Tracker`` (``log_params``, ``log_metrics``,
``finish``), the protocol ``run_trial`` reports to.

Under ``wandb agent`` the run W&B's controller created is picked up by ``wandb.init`` from the
agent's environment; the final metrics go to the run summary under the result names (``Latency``,
``Total_Latency``, ``Throughput``, ``Top1``, ``Top5`` and ours), which is what the sweep's
``metric.name`` reads. ``WANDB_MODE=offline`` works without an account.

W&B records the command line (``sys.argv``) as run metadata and wandb offers no setting to
replace it, so when an argument carries a URL credential (``--redis redis://:pw@host``) the run
is started with W&B's system metadata off; string figures (a failure's reason) are redacted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipeline.extras import require
from pipeline.redact import has_credentials, redact_text
from pipeline.status import TrialStatus
from pipeline.trial import NullTracker, Tracker

#: The speed-up W&B shows: 1 / Relative_Latency (the trial's own alternating ratio), never one
#: absolute figure over another taken at a different moment.
SPEEDUP = "speedup_vs_unpruned"


def _loggable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers and (redacted) strings W&B can chart or show; nested dicts (``latency`` stats) kept
    as is; with a Relative_Latency, its speed-up (``SPEEDUP``) beside it."""
    loggable = {k: redact_text(v) if isinstance(v, str) else v for k, v in metrics.items()
                if isinstance(v, (int, float, str, dict)) and not isinstance(v, bool)}
    relative = loggable.get("Relative_Latency")
    if isinstance(relative, (int, float)) and relative > 0:
        loggable[SPEEDUP] = round(1.0 / relative, 4)
    return loggable


class WandbTracker:
    """One W&B run per trial: parameters in the config, metrics in the history and summary."""

    def __init__(self, project: str | None = None, entity: str | None = None,
                 group: str | None = None, dir: Path | str | None = None, job_type: str = "trial"):
        self.init_kwargs = {"project": project, "entity": entity, "group": group,
                            "dir": str(dir) if dir else None, "job_type": job_type}
        self.run: Any = None
        #: The next history step: rows after the epochs' (``log_epoch``, step = epoch) follow them.
        self.step = 0

    @property
    def run_path(self) -> str:
        return "" if self.run is None else "/".join(str(p) for p in self.run.path)

    def log_params(self, params: dict[str, Any]) -> None:
        """Start the run with the trial's parameters as its config (the agent's run, if any)."""
        wandb = require("wandb")

        kwargs = {k: v for k, v in self.init_kwargs.items() if v is not None}
        if has_credentials(sys.argv):
            kwargs["settings"] = wandb.Settings(x_disable_meta=True)
        self.run = wandb.init(config=dict(params), **kwargs)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """Figures as one history step (pre-retraining ones too: Top1_before, macs, params)."""
        self.run.log({k: v for k, v in _loggable(metrics).items() if not isinstance(v, dict)}, step=self.step)
        self.step += 1

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """One retraining epoch's figures with ``epoch`` (from 1) as the step, so that W&B's
        hyperband (which reads the sweep metric's history) can stop the run."""
        self.run.log({**_loggable(metrics), "epoch": epoch}, step=epoch)
        self.step = epoch + 1

    def finish(self, summary: dict[str, Any]) -> None:
        """Final metrics (and status, reason) to the run summary, then end the run."""
        self.run.summary.update(_loggable(summary))
        self.run.finish(exit_code=1 if summary.get("status") == TrialStatus.FAILED else 0)


def make_tracker(kind: str, **kwargs: Any) -> Tracker:
    """``none`` → NullTracker, ``wandb`` → WandbTracker(**kwargs)."""
    if kind == "wandb":
        return WandbTracker(**kwargs)
    if kind in ("none", ""):
        return NullTracker()
    raise ValueError(f"unknown tracker {kind!r}")
