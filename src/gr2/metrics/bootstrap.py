"""Bootstrap statistics for per-list metric values (numpy only).

Both functions resample *lists* (queries / users) with replacement. ``nan``
values (metric undefined for that list) are dropped before resampling; in
:func:`paired_bootstrap` a list is dropped if either system's value is ``nan``.
Resampling is vectorised: a matrix of resampled indices (``n_boot x n``) is
drawn from :func:`numpy.random.default_rng` (``seed``) and means are taken
along rows, processed in row blocks to bound memory. Results are deterministic
for a given ``(values, n_boot, seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

__all__ = ["ValuesLike", "bootstrap_ci", "paired_bootstrap"]

#: A 1-D sequence of per-list metric values.
ValuesLike = Union[Sequence[float], npt.NDArray[Any]]

# Upper bound on the number of elements of one block of the resampling matrix
# (indices int64 + gathered float64: ~16 bytes each -> ~64 MB per block).
_BLOCK_ELEMS = 4_000_000


def _as_values(values: ValuesLike, name: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if np.any(np.isinf(arr)):
        raise ValueError(f"{name} must not contain inf")
    return arr


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _boot_means(
    columns: Sequence[npt.NDArray[np.float64]], n_boot: int, seed: int
) -> list[npt.NDArray[np.float64]]:
    """Bootstrap means of several equally long columns using the SAME resamples.

    Returns one array of length ``n_boot`` per column:
    ``means[c][b] = mean_i columns[c][idx[b, i]]`` with
    ``idx[b, i] ~ Uniform{0..n-1}`` i.i.d.
    """
    n = columns[0].shape[0]
    rng = np.random.default_rng(seed)
    out = [np.empty(n_boot, dtype=np.float64) for _ in columns]
    rows = max(1, _BLOCK_ELEMS // max(n, 1))
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        for col, dst in zip(columns, out):
            dst[start:stop] = col[idx].mean(axis=1)
    return out


def _percentile_ci(
    boot: npt.NDArray[np.float64], alpha: float
) -> tuple[float, float]:
    lo, hi = np.percentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def bootstrap_ci(
    values: ValuesLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of the mean.

    ``mean = (1/n) sum_i x_i``; for ``b = 1..n_boot`` draw ``n`` indices with
    replacement and compute the resampled mean ``m_b``; the ``1 - alpha`` CI is
    ``[q_{alpha/2}(m), q_{1-alpha/2}(m)]`` (empirical quantiles, linear
    interpolation).

    Args:
        values: per-list values; ``nan`` entries are dropped.
        n_boot: number of bootstrap resamples.
        alpha: 1 - confidence level (0.05 -> 95% CI).
        seed: seed for :func:`numpy.random.default_rng`.

    Returns:
        ``(mean, lo, hi)``; all ``nan`` if no non-nan value is given.
    """
    _check_boot_args(n_boot, alpha)
    x = _as_values(values, "values")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    (boot,) = _boot_means([x], int(n_boot), seed)
    lo, hi = _percentile_ci(boot, alpha)
    return float(x.mean()), lo, hi


def format_p_value(p: float | None, n_boot: int | None) -> str:
    """A :func:`paired_bootstrap` p-value for a table. It is two-sided (twice the share of resamples
    on the far side of zero), so 0 means p < 2/B; without B it is written ``0``."""
    if p is None or math.isnan(p):
        return "—"
    if p == 0:
        return f"<{2 / n_boot:.2g}" if n_boot else "0"
    return f"{p:.3f}"


def paired_bootstrap(
    a: ValuesLike,
    b: ValuesLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Paired bootstrap comparison of system B against system A on the same lists.

    With ``d = mean(b) - mean(a)`` and relative difference
    ``rel = (mean(b) - mean(a)) / mean(a)``, each bootstrap resample draws the
    same list indices for both systems and recomputes ``d_b`` and ``rel_b``.
    CIs are percentile intervals at level ``1 - alpha``. The two-sided p-value is

        ``p = min(1, 2 * share of d_b on the other side of 0 from d)``

    (``d_b <= 0`` if ``d > 0``, ``d_b >= 0`` if ``d < 0``; ``p = 1`` if ``d == 0``).
    Its resolution is ``2 / n_boot``: ``p == 0`` means ``p < 2 / n_boot``.

    Args:
        a: per-list values of the baseline system A.
        b: per-list values of system B, aligned with ``a`` (same lists, same order).
        n_boot: number of bootstrap resamples.
        seed: seed for :func:`numpy.random.default_rng`.
        alpha: 1 - confidence level of the CIs.

    Returns:
        dict with keys ``n`` (lists used, after dropping pairs with a ``nan``),
        ``mean_a``, ``mean_b``, ``diff``, ``diff_lo``, ``diff_hi``, ``rel_diff``,
        ``rel_lo``, ``rel_hi``, ``p_value``. Relative quantities are ``nan``
        when ``mean(a) == 0`` (and resamples with a zero mean of ``a`` are
        ignored for the relative CI). Everything but ``n`` is ``nan`` if no
        pair is left.

    Raises:
        ValueError: if ``a`` and ``b`` have different lengths.
    """
    _check_boot_args(n_boot, alpha)
    xa = _as_values(a, "a")
    xb = _as_values(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(
            f"a and b must have the same length (paired), got {xa.shape[0]} and {xb.shape[0]}"
        )
    ok = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[ok], xb[ok]
    n = int(xa.shape[0])
    nan = math.nan
    if n == 0:
        return {
            "n": 0.0, "mean_a": nan, "mean_b": nan, "diff": nan, "diff_lo": nan,
            "diff_hi": nan, "rel_diff": nan, "rel_lo": nan, "rel_hi": nan,
            "p_value": nan,
        }  # fmt: skip
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    diff = mean_b - mean_a
    boot_a, boot_b = _boot_means([xa, xb], int(n_boot), seed)
    boot_d = boot_b - boot_a
    diff_lo, diff_hi = _percentile_ci(boot_d, alpha)

    if mean_a != 0.0:
        rel = diff / mean_a
        nz = boot_a != 0.0
        if nz.any():
            rel_lo, rel_hi = _percentile_ci(boot_d[nz] / boot_a[nz], alpha)
        else:  # pragma: no cover - mean_a != 0 implies some resample has a != 0
            rel_lo = rel_hi = nan
    else:
        rel = rel_lo = rel_hi = nan

    if diff > 0:
        p = 2.0 * float(np.mean(boot_d <= 0.0))
    elif diff < 0:
        p = 2.0 * float(np.mean(boot_d >= 0.0))
    else:
        p = 1.0
    return {
        "n": float(n),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "diff": diff,
        "diff_lo": diff_lo,
        "diff_hi": diff_hi,
        "rel_diff": rel,
        "rel_lo": rel_lo,
        "rel_hi": rel_hi,
        "p_value": min(1.0, p),
    }
