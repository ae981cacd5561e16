"""Sweeps: W&B sweep YAML → search space → Optuna engine; gate, early stopping, trial store;
``loop`` runs a sweep's worker(s)."""

from .config import Constraint, Objective, SweepConfig, load_sweep
from .engine import SweepRunner, TrialContext, TrialFunction, TrialOutcome, best_trials, open_study
from .mapping import MappedParams, check_mapping, map_params
from .storage import load_trials, open_storage

__all__ = [
    "Constraint", "MappedParams", "Objective", "SweepConfig", "SweepRunner", "TrialContext",
    "TrialFunction", "TrialOutcome", "best_trials", "check_mapping", "load_sweep", "load_trials",
    "map_params", "open_storage", "open_study",
]
