"""A real slates example from MovieLens ratings (docs/slates.md, "MovieLens-1M example").

Construction, per user, around one global cut time ``T`` (the ``cut_quantile`` of all rating times):

* **history**: every rating the user made before ``T``, oldest first (users with fewer than
  ``min_history`` are skipped);
* **slate**: the top ``k`` of a cheap pre-ranker (``popularity`` or ``cooc``) fitted on the ratings
  before ``T`` only, seen items excluded, in its order and with its scores: what a production
  system would have shown at ``T``;
* **labels**: the user's first ``window`` ratings at or after ``T``: a slate item rated >= 4 gets
  2, rated 3 gets 1; rated lower or not rated in the window, 0.

Why it is honest: nothing the history or the pre-ranker sees is later than ``T`` and every label is
later than ``T``, for every user (a per-user "last items" cut would let the pre-ranker learn from
other users' ratings made after this user's slate). The positives are not inserted into the
slate: they are only the pre-ranker's candidates the user went on to rate, so their positions are
the pre-ranker's own. Slates where the user rated none of the candidates are written too; the
loader drops and counts them (``no_positive``), as it would for a real log.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.data.loaders import RawData
from gr2.runs import atomic_write_json, atomic_write_parquet
from gr2.slates.config import MovieLensSlates

log = logging.getLogger(__name__)

__all__ = ["build_movielens_slates", "build_slates", "grade"]


def grade(rating: np.ndarray) -> np.ndarray:
    """Rating → label: >= 4 → 2 (liked: "conversion"), 3 → 1 ("click"), lower → 0."""
    return np.where(rating >= 4, 2, np.where(rating >= 3, 1, 0)).astype(np.int64)


def build_slates(raw: RawData, params: MovieLensSlates) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(slates, items, report)`` from ratings (``raw.rating`` aligned with ``raw.interactions``)."""
    from gr2.prerank import make_preranker, top_k

    if raw.rating is None:
        raise ValueError(f"dataset {raw.name!r} has no ratings to label slates with")
    df = raw.interactions.assign(rating=raw.rating.to_numpy(float))
    if df["timestamp"].isna().any():
        raise ValueError(f"dataset {raw.name!r} has ratings without a time: a cut time needs them all")
    df = df.sort_values(["raw_user_id", "position"], kind="stable")
    catalogue = pd.Index(raw.items["raw_id"].astype(str))
    df["item"] = catalogue.get_indexer(df["raw_item_id"].astype(str))
    cut = float(np.quantile(df["timestamp"].to_numpy(), params.cut_quantile))
    past, future = df[df["timestamp"] < cut], df[df["timestamp"] >= cut]
    histories = past.groupby("raw_user_id", sort=True)
    reactions = future.groupby("raw_user_id", sort=True)
    users = [u for u, h in histories if len(h) >= params.min_history and u in reactions.groups]

    pre = make_preranker(params.prerank)
    pre.fit([h["item"].tolist() for _, h in histories], len(catalogue))
    hist = [histories.get_group(u) for u in users]
    cands, scores = top_k(pre, [h["item"].tolist() for h in hist], k=params.k, exclude_seen=True, progress=False)

    rows = []
    for u, h, c, s in zip(users, hist, cands, scores):
        seen = reactions.get_group(u).head(params.window)
        label_of = dict(zip(seen["item"], grade(seen["rating"].to_numpy())))
        rows.append({
            "request_id": f"u{u}", "user_id": u, "timestamp": cut,
            "history": h["raw_item_id"].astype(str).tolist(), "history_timestamps": h["timestamp"].tolist(),
            "candidates": catalogue[c].tolist(), "labels": [int(label_of.get(i, 0)) for i in c],
            "scores": s.astype(np.float64).tolist(),
        })
    slates = pd.DataFrame(rows)
    n_pos = np.array([sum(g > 0 for g in r["labels"]) for r in rows])
    report = {
        "dataset": raw.name, "params": asdict(params), "cut_time": cut,
        "cut_time_utc": pd.to_datetime(cut, unit="s", utc=True).isoformat(),
        "ratings_before_cut": len(past), "ratings_after_cut": len(future),
        "slates": len(rows), "slates_with_positive": int((n_pos > 0).sum()),
        "mean_positives_when_any": round(float(n_pos[n_pos > 0].mean()), 4) if (n_pos > 0).any() else None,
    }
    items = raw.items.rename(columns={"raw_id": "item_id"})[["item_id", "title", "categories", "description"]]
    return slates, items, report


def build_movielens_slates(out: str | Path, dataset: str = "ml-1m", params: MovieLensSlates | None = None) -> dict:
    """Load ``dataset`` (``ml-1m`` or ``ml-100k``, fetched once into the cache), build the example and
    write ``out/slates.parquet``, ``out/items.parquet`` and ``out/build.json``; returns the report."""
    from gr2.data.loaders import load_movielens

    slates, items, report = build_slates(load_movielens(dataset), params or MovieLensSlates())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(out / "slates.parquet", slates)
    atomic_write_parquet(out / "items.parquet", items)
    atomic_write_json(out / "build.json", report)
    log.info("slates: %s", report)
    return report
