"""Tests for gr2.metrics.bootstrap (bootstrap CIs and paired bootstrap test)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from gr2.metrics.bootstrap import bootstrap_ci, format_p_value, paired_bootstrap

PAIRED_KEYS = {
    "n", "mean_a", "mean_b", "diff", "diff_lo", "diff_hi",
    "rel_diff", "rel_lo", "rel_hi", "p_value",
}  # fmt: skip


# --------------------------------------------------------------------------- #
# bootstrap_ci
# --------------------------------------------------------------------------- #
def test_bootstrap_ci_contains_mean_and_matches_normal_theory() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, size=2000)
    mean, lo, hi = bootstrap_ci(x, n_boot=2000, seed=1)
    assert mean == pytest.approx(x.mean())
    assert lo < mean < hi
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert abs((lo + hi) / 2 - mean) < 0.2 * half


def test_bootstrap_ci_binary_metric_values() -> None:
    # hit-rate style 0/1 values
    rng = np.random.default_rng(3)
    x = (rng.random(1000) < 0.2).astype(float)
    mean, lo, hi = bootstrap_ci(x)
    p = x.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / x.size)
    assert lo < mean < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.random(250)
    large = rng.random(4000)
    _, lo_s, hi_s = bootstrap_ci(small)
    _, lo_l, hi_l = bootstrap_ci(large)
    # width ~ 1/sqrt(n): ratio should be ~ 1/4
    assert (hi_l - lo_l) < 0.4 * (hi_s - lo_s)


def test_bootstrap_ci_alpha_controls_width() -> None:
    x = np.random.default_rng(0).random(500)
    _, lo95, hi95 = bootstrap_ci(x, alpha=0.05)
    _, lo50, hi50 = bootstrap_ci(x, alpha=0.5)
    assert lo95 < lo50 < hi50 < hi95


def test_bootstrap_ci_deterministic_for_seed() -> None:
    x = np.random.default_rng(5).random(300)
    assert bootstrap_ci(x, seed=42) == bootstrap_ci(x, seed=42)
    assert bootstrap_ci(list(x), seed=42) == bootstrap_ci(x, seed=42)
    assert bootstrap_ci(x, seed=42) != bootstrap_ci(x, seed=43)


def test_bootstrap_ci_edge_cases() -> None:
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    # nan values are dropped
    m, lo, hi = bootstrap_ci([1.0, math.nan, 3.0])
    assert m == 2.0 and 1.0 <= lo <= hi <= 3.0
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan, math.nan]))
    assert all(math.isnan(v) for v in bootstrap_ci([]))


@pytest.mark.parametrize(
    "kwargs", [{"n_boot": 0}, {"alpha": 0.0}, {"alpha": 1.0}, {"alpha": -0.1}]
)
def test_bootstrap_ci_bad_args(kwargs) -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], **kwargs)


def test_bootstrap_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([[1.0, 2.0]])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, math.inf])


# --------------------------------------------------------------------------- #
# paired_bootstrap
# --------------------------------------------------------------------------- #
def test_paired_clear_difference_is_significant() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(2000) < 0.30).astype(float)  # e.g. per-list hits of system A
    b = np.where(rng.random(2000) < 0.2, 1.0, a)  # B fixes ~20% of A's misses
    res = paired_bootstrap(a, b)
    assert set(res) == PAIRED_KEYS
    assert res["n"] == 2000
    assert res["mean_a"] == pytest.approx(a.mean())
    assert res["mean_b"] == pytest.approx(b.mean())
    assert res["diff"] == pytest.approx(b.mean() - a.mean())
    assert res["diff"] > 0.1
    assert 0 < res["diff_lo"] < res["diff"] < res["diff_hi"]
    assert res["rel_diff"] == pytest.approx((b.mean() - a.mean()) / a.mean())
    assert 0 < res["rel_lo"] < res["rel_diff"] < res["rel_hi"]
    assert res["p_value"] < 0.01


def test_paired_identical_systems_not_significant() -> None:
    a = np.random.default_rng(1).random(500)
    res = paired_bootstrap(a, a.copy())
    assert res["diff"] == 0.0
    assert res["diff_lo"] == 0.0 and res["diff_hi"] == 0.0
    assert res["rel_diff"] == 0.0
    assert res["p_value"] == 1.0


def test_paired_same_distribution_not_significant() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(1000)
    b = a + rng.normal(0.0, 0.1, size=1000)
    b -= b.mean() - a.mean() - 1e-4  # tiny true difference, far below the noise
    res = paired_bootstrap(a, b, seed=3)
    assert res["diff_lo"] < 0 < res["diff_hi"]
    assert res["p_value"] > 0.2


def test_paired_exploits_pairing() -> None:
    # b = a + constant: unpaired CIs overlap heavily, but the paired
    # difference is exactly constant in every resample -> degenerate CI, p = 0
    a = np.random.default_rng(4).random(300)
    b = a + 0.01
    res = paired_bootstrap(a, b)
    assert res["diff_lo"] == pytest.approx(0.01, abs=1e-12)
    assert res["diff_hi"] == pytest.approx(0.01, abs=1e-12)
    assert res["p_value"] == 0.0
    _, lo_a, hi_a = bootstrap_ci(a)
    _, lo_b, hi_b = bootstrap_ci(b)
    assert lo_b < hi_a  # the marginal CIs overlap


def test_paired_swap_antisymmetric() -> None:
    rng = np.random.default_rng(5)
    a = rng.random(400)
    b = a + rng.normal(0.02, 0.2, size=400)
    ab = paired_bootstrap(a, b, seed=9)
    ba = paired_bootstrap(b, a, seed=9)
    assert ba["diff"] == pytest.approx(-ab["diff"])
    assert ba["diff_lo"] == pytest.approx(-ab["diff_hi"])
    assert ba["diff_hi"] == pytest.approx(-ab["diff_lo"])
    assert ba["p_value"] == pytest.approx(ab["p_value"])


def test_paired_p_value_definition() -> None:
    rng = np.random.default_rng(6)
    a = rng.random(200)
    b = a + rng.normal(0.03, 0.3, size=200)
    res = paired_bootstrap(a, b, n_boot=500, seed=0)
    # p is a multiple of 2 / n_boot, in [0, 1]
    assert 0.0 <= res["p_value"] <= 1.0
    assert (res["p_value"] * 500 / 2) == pytest.approx(round(res["p_value"] * 500 / 2))


def test_format_p_value_bounds_a_zero_by_the_two_sided_resolution() -> None:
    a = np.zeros(100)
    res = paired_bootstrap(a, a + 1.0, n_boot=1000, seed=0)
    assert res["p_value"] == 0.0
    assert format_p_value(res["p_value"], 1000) == "<0.002"  # two-sided: the smallest non-zero p is 2/B
    assert format_p_value(0.0, 2000) == "<0.001"
    assert format_p_value(0.0, None) == "0"
    assert format_p_value(0.0437, 1000) == "0.044"
    assert format_p_value(None, 1000) == "—" and format_p_value(math.nan, 1000) == "—"


def test_paired_deterministic_for_seed() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(300), rng.random(300)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(list(a), list(b), seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(a, b, seed=5) != paired_bootstrap(a, b, seed=6)


def test_paired_nan_pairs_dropped() -> None:
    a = [1.0, math.nan, 0.0, 1.0]
    b = [1.0, 1.0, math.nan, 0.5]
    res = paired_bootstrap(a, b)
    assert res["n"] == 2
    assert res["mean_a"] == 1.0 and res["mean_b"] == 0.75
    assert res["diff"] == -0.25
    empty = paired_bootstrap([math.nan], [1.0])
    assert empty["n"] == 0 and math.isnan(empty["diff"]) and math.isnan(empty["p_value"])


def test_paired_zero_baseline_relative_nan() -> None:
    res = paired_bootstrap([0.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    assert res["diff"] == pytest.approx(2 / 3)
    assert math.isnan(res["rel_diff"])
    assert math.isnan(res["rel_lo"]) and math.isnan(res["rel_hi"])


def test_paired_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], n_boot=0)


def test_paired_bootstrap_fast_on_large_input() -> None:
    rng = np.random.default_rng(8)
    a = rng.random(20_000)
    b = a + rng.normal(0.001, 0.05, size=20_000)
    t0 = time.perf_counter()
    res = paired_bootstrap(a, b, n_boot=1000)
    elapsed = time.perf_counter() - t0
    assert res["n"] == 20_000
    assert res["diff_lo"] < res["diff"] < res["diff_hi"]
    assert elapsed < 5.0, f"paired_bootstrap took {elapsed:.2f}s"
