"""Fitting the latency model: non-negative least squares on relative error, judged leave-one-out.

Non-negative because no layer makes a network faster; on relative error (rows weighted by 1/y)
because a 0.1 ms miss matters more on a 1 ms architecture than on a 4 ms one. Columns are scaled
to unit maximum first so that NNLS sees features of similar size (MACs in millions next to a
constant 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls


def fit_nnls(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative coefficients minimising the squared relative error of ``x @ c`` against ``y``,
    each row's error times its weight (default 1)."""
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    rows = (1.0 if weights is None else weights) / y
    coefficients, _ = nnls((x / scale) * rows[:, None], y * rows)
    return coefficients / scale


@dataclass
class FitErrors:
    """Absolute relative errors of a fit: in sample, and leave-one-out (each row predicted by the
    fit on all the others: what to expect on an architecture the fit has not seen)."""

    residual_median: float
    residual_p90: float
    loo_median: float
    loo_p90: float


def fit_errors(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray,
               weights: np.ndarray | None = None) -> FitErrors:
    residual = np.abs(x @ coefficients / y - 1.0)
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        kept_weights = None if weights is None else weights[keep]
        loo[i] = abs(float(x[i] @ fit_nnls(x[keep], y[keep], kept_weights)) / y[i] - 1.0)
    return FitErrors(float(np.median(residual)), float(np.percentile(residual, 90)),
                     float(np.median(loo)), float(np.percentile(loo, 90)))
