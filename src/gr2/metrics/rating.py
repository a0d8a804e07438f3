"""Rating-prediction errors: RMSE and MAE with percentile-bootstrap 95% intervals (numpy only).

Both resample the same rows (one :func:`gr2.metrics.bootstrap.bootstrap_ci` per error, same seed).
MAE is a mean of ``|pred - true|``; RMSE is the square root of a mean of ``(pred - true)²``, and
since the square root is monotone the percentile interval of the resampled RMSEs is the square root
of the MSE's interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gr2.metrics.bootstrap import ValuesLike, bootstrap_ci

__all__ = ["rating_errors"]


def rating_errors(pred: ValuesLike, true: ValuesLike, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"n", "rmse", "rmse_lo", "rmse_hi", "mae", "mae_lo", "mae_hi"}`` of ``pred`` against ``true``.
    Every prediction must be a finite number (a model's unusable answer is replaced before, and counted)."""
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"pred and true must be 1-D and aligned, got shapes {p.shape} and {t.shape}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("pred and true must be finite")
    mse, mse_lo, mse_hi = bootstrap_ci((p - t) ** 2, n_boot=n_boot, seed=seed)
    mae, mae_lo, mae_hi = bootstrap_ci(np.abs(p - t), n_boot=n_boot, seed=seed)
    return {"n": int(p.size), "rmse": math.sqrt(mse), "rmse_lo": math.sqrt(mse_lo), "rmse_hi": math.sqrt(mse_hi),
            "mae": mae, "mae_lo": mae_lo, "mae_hi": mae_hi}
