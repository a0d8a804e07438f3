"""The MovieLens example builder on a small synthetic ratings table (the real ML-1M run is marked
``network``): a global cut time, no future in histories or in the pre-ranker, positives only where
the pre-ranker put them, labels graded by rating."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gr2.data.loaders import RawData, read_items_file
from gr2.slates.config import MovieLensSlates
from gr2.slates.format import load_slates
from gr2.slates.movielens import build_movielens_slates, build_slates, grade


def _ratings(n_users: int = 30, n_items: int = 40, per_user: int = 14, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False, p=np.r_[[4.0] * 8, [1.0] * (n_items - 8)] /
                           (32 + n_items - 8))
        for t, i in enumerate(items):
            rows.append({"raw_user_id": f"u{u}", "raw_item_id": f"m{i}", "timestamp": float(100 * t + u),
                         "position": t, "rating": float(rng.integers(1, 6))})
    df = pd.DataFrame(rows)
    items = pd.DataFrame({"raw_id": [f"m{i}" for i in range(n_items)], "title": [f"Movie {i}" for i in range(n_items)],
                          "categories": [["Drama"] if i % 2 else ["Comedy"] for i in range(n_items)],
                          "description": ""})
    return RawData(items=items, interactions=df.drop(columns="rating"), name="toy", rating=df["rating"])


def test_grades():
    assert grade(np.array([1, 2, 3, 4, 5])).tolist() == [0, 0, 1, 2, 2]


def test_construction_is_honest():
    raw = _ratings()
    params = MovieLensSlates(k=6, window=5, cut_quantile=0.6, min_history=3, prerank="popularity")
    slates, items, report = build_slates(raw, params)
    cut = report["cut_time"]
    ratings = raw.interactions.assign(rating=raw.rating)
    before = ratings[ratings["timestamp"] < cut]
    assert report["slates"] == len(slates) > 0
    counts = before["raw_item_id"].value_counts()
    for row in slates.itertuples():
        mine = ratings[ratings["raw_user_id"] == row.user_id]
        past = mine[mine["timestamp"] < cut]
        assert row.history == past["raw_item_id"].tolist()          # everything before the cut, in order
        assert max(row.history_timestamps) < cut <= row.timestamp   # and nothing after it
        assert not set(row.candidates) & set(row.history)           # seen items are not proposed
        # the slate is the popularity pre-ranker's top-k fitted on the ratings before the cut only
        assert row.scores == sorted(row.scores, reverse=True)
        assert row.scores == [float(counts.get(c, 0)) for c in row.candidates]
        window = mine[mine["timestamp"] >= cut].head(params.window)
        label_of = dict(zip(window["raw_item_id"], grade(window["rating"].to_numpy())))
        assert row.labels == [int(label_of.get(c, 0)) for c in row.candidates]
    assert report["slates_with_positive"] == sum(any(g > 0 for g in r) for r in slates["labels"])
    assert set(items.columns) == {"item_id", "title", "categories", "description"}


def test_files_load_and_slates_without_a_click_are_dropped(tmp_path, monkeypatch):
    raw = _ratings()
    monkeypatch.setattr("gr2.data.loaders.load_movielens", lambda name: raw)
    report = build_movielens_slates(tmp_path, "ml-1m", MovieLensSlates(k=6, window=5, cut_quantile=0.6,
                                                                       min_history=3, prerank="cooc"))
    items = read_items_file(tmp_path / "items.parquet")
    slates, counts = load_slates(tmp_path / "slates.parquet", items)
    assert counts["rows"] == report["slates"]
    assert counts["kept"] + counts["no_positive"] + counts["no_negative"] == report["slates"]
    assert counts["kept"] == len(slates) > 0


@pytest.mark.network
@pytest.mark.slow
def test_movielens_1m(tmp_path):
    report = build_movielens_slates(tmp_path)
    assert report["slates"] > 1000 and report["slates_with_positive"] > 400
