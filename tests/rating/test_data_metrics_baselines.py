"""The rating task's examples and split, its error metrics, and the baselines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gr2.checks import ConfigError
from gr2.lists import seeded_sample
from gr2.metrics.rating import rating_errors
from gr2.rating import baselines
from gr2.rating.data import examples, fit_ratings, rated_sequences


def interactions(ratings: dict[int, list[tuple[int, float]]]) -> pd.DataFrame:
    rows = [{"user_id": u, "item_id": i, "position": p, "timestamp": float(p), "raw_user_id": str(u), "rating": r}
            for u, seq in ratings.items() for p, (i, r) in enumerate(seq)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # the order in the file does not matter


SEQS = {0: [(10, 5.0), (11, 4.0), (12, 3.0), (13, 2.0), (14, 1.0)], 1: [(10, 4.0), (12, 2.0), (13, 5.0)]}


def test_sequences_split_and_fit_ratings():
    seqs = rated_sequences(interactions(SEQS))
    assert seqs == [SEQS[0], SEQS[1]]
    test = examples(seqs, "test", max_history=2)
    assert [(e.user, e.history, e.item, e.rating) for e in test] == [
        (0, [(12, 3.0), (13, 2.0)], 14, 1.0), (1, [(10, 4.0), (12, 2.0)], 13, 5.0)]
    assert [(e.user, e.item) for e in examples(seqs, "val", 10)] == [(0, 13), (1, 12)]
    assert [(e.user, e.item, e.history) for e in examples(seqs, "train", 10)] == [(0, 12, [(10, 5.0), (11, 4.0)])]
    # the baselines never see a rating at or after the split's targets
    assert fit_ratings(seqs, "test").values.tolist() == [[0, 10, 5], [0, 11, 4], [0, 12, 3], [0, 13, 2],
                                                         [1, 10, 4], [1, 12, 2]]
    assert len(fit_ratings(seqs, "val")) == 4


def test_data_without_usable_ratings_is_refused():
    df = interactions(SEQS)
    with pytest.raises(ConfigError, match="no rating column"):
        rated_sequences(df.drop(columns="rating"))
    for bad in (np.nan, 0.0, 6.0):
        with pytest.raises(ConfigError, match="from 1 to 5"):
            rated_sequences(df.assign(rating=df["rating"].where(df["item_id"] != 11, bad)))


def test_sample_is_seeded_and_ordered():
    items = examples(rated_sequences(interactions({u: SEQS[0] for u in range(20)})), "test", 5)
    a, b = seeded_sample(items, 5, seed=1), seeded_sample(items, 5, seed=1)
    assert a == b and [e.user for e in a] == sorted(e.user for e in a) and len(a) == 5
    assert [e.user for e in a] == [0, 7, 8, 13, 18]  # the users rating.data.sample drew with this seed
    assert seeded_sample(items, None, 0) == items == seeded_sample(items, 50, 0)


def test_rating_errors_hand_values_and_intervals():
    m = rating_errors([3, 4, 5, 1], [4, 4, 3, 1], n_boot=2000, seed=0)
    assert m["n"] == 4 and m["mae"] == pytest.approx(0.75) and m["rmse"] == pytest.approx(math.sqrt(5 / 4))
    assert m["mae_lo"] <= m["mae"] <= m["mae_hi"] and m["rmse_lo"] <= m["rmse"] <= m["rmse_hi"]
    perfect = rating_errors([1, 2, 3], [1, 2, 3])
    assert perfect["rmse"] == perfect["rmse_hi"] == perfect["mae"] == 0.0
    with pytest.raises(ValueError, match="aligned"):
        rating_errors([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        rating_errors([np.nan], [1])


def test_rmse_interval_is_the_square_root_of_the_mse_interval():
    from gr2.metrics.bootstrap import bootstrap_ci

    rng = np.random.default_rng(0)
    p, t = rng.uniform(1, 5, 300), rng.integers(1, 6, 300)
    m = rating_errors(p, t, n_boot=500, seed=3)
    mse, lo, hi = bootstrap_ci((p - t) ** 2, n_boot=500, seed=3)
    assert (m["rmse"], m["rmse_lo"], m["rmse_hi"]) == pytest.approx((math.sqrt(mse), math.sqrt(lo), math.sqrt(hi)))


FIT = pd.DataFrame({"user": [0, 0, 1, 1, 2], "item": [0, 1, 0, 1, 0], "rating": [5.0, 1.0, 4.0, 2.0, 5.0]})


def test_global_and_item_means_with_fallback_for_unseen_items():
    users, items = np.array([3, 3, 3]), np.array([0, 1, 99])
    assert baselines.global_mean(FIT, users, items).tolist() == [3.4] * 3
    assert baselines.item_mean(FIT, users, items).tolist() == pytest.approx([14 / 3, 1.5, 3.4])


def test_matrix_factorisation_learns_structure_stays_in_range_and_handles_the_unseen():
    """Two taste groups with opposite ratings of two item groups: biased MF recovers the held-out
    ratings far better than the item means (which average the groups away)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        for i in rng.choice(40, size=25, replace=False):
            rows.append((u, int(i), 5.0 if (u % 2) == (i % 2) else 1.0))
    df = pd.DataFrame(rows, columns=["user", "item", "rating"])
    held = df.groupby("user").tail(1)
    fit = df.drop(held.index)
    users, items = held["user"].to_numpy(), held["item"].to_numpy()
    mf = baselines.matrix_factorisation(fit, users, items, factors=8, epochs=60, lr=0.02, reg=0.02, seed=0)
    item = baselines.item_mean(fit, users, items)
    true = held["rating"].to_numpy()
    assert rating_errors(mf, true)["rmse"] < 0.5 * rating_errors(item, true)["rmse"]
    unseen = baselines.matrix_factorisation(fit, np.array([999, 0]), np.array([0, 999]), factors=8, epochs=5)
    assert np.isfinite(unseen).all() and ((1 <= unseen) & (unseen <= 5)).all()
    again = baselines.matrix_factorisation(fit, users, items, factors=8, epochs=60, lr=0.02, reg=0.02, seed=0)
    assert np.array_equal(mf, again)  # seeded
