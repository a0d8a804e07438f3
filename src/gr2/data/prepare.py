"""From raw data to the run's tables: rating filter, k-core, dense ids, statistics.

Nothing is dropped silently: every filter's removals are counted in the returned statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gr2.data.config import DataConfig
from gr2.data.loaders import DataFormatError, RawData

log = logging.getLogger(__name__)

# A user needs a test target, a validation target and at least one history item.
MIN_SEQUENCE = 3


@dataclass
class Prepared:
    items: pd.DataFrame
    interactions: pd.DataFrame
    stats: dict


def k_core(pairs: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Keep interactions whose user and item both have ≥ k of them, iterated to a fixed point.

    Returns the filtered frame and the number of passes it took.
    """
    passes = 0
    if k <= 1:
        return pairs, passes
    while True:
        passes += 1
        user_counts = pairs["raw_user_id"].map(pairs["raw_user_id"].value_counts())
        item_counts = pairs["raw_item_id"].map(pairs["raw_item_id"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return pairs, passes
        pairs = pairs[keep]


def prepare(raw: RawData, cfg: DataConfig) -> Prepared:
    inter = raw.interactions
    if raw.rating is not None:  # travels with its interaction through the filters (the rating task reads it)
        inter = inter.assign(rating=raw.rating.to_numpy(float))
    filtering: dict[str, int] = {"raw_interactions": len(inter), "raw_items": len(raw.items)}

    if cfg.min_rating is not None:
        if raw.rating is None:
            raise DataFormatError(f"data.min_rating is set but dataset {raw.name!r} has no ratings")
        keep = (raw.rating >= cfg.min_rating).to_numpy()
        filtering["removed_low_rating"] = int((~keep).sum())
        inter = inter[keep]

    before = len(inter)
    inter, passes = k_core(inter, cfg.k_core)
    filtering["removed_k_core"] = before - len(inter)
    filtering["k_core_passes"] = passes

    too_short = inter["raw_user_id"].map(inter["raw_user_id"].value_counts()) < MIN_SEQUENCE
    filtering["removed_short_users_interactions"] = int(too_short.sum())
    inter = inter[~too_short]
    if inter.empty:
        raise nothing_left(raw.name, filtering, cfg)

    if cfg.max_users is not None:
        users = inter["raw_user_id"].unique()
        if cfg.max_users < len(users):
            rng = np.random.default_rng(cfg.seed)
            keep_users = set(rng.choice(users, size=cfg.max_users, replace=False))
            sampled = inter["raw_user_id"].isin(keep_users)
            filtering["removed_user_sample"] = int((~sampled).sum())
            inter = inter[sampled]

    used_items = pd.unique(inter["raw_item_id"])
    items = raw.items[raw.items["raw_id"].isin(set(used_items))].reset_index(drop=True)
    filtering["removed_items_without_interactions"] = len(raw.items) - len(items)
    items.insert(0, "item_id", np.arange(len(items), dtype=np.int64))
    item_index = pd.Series(items["item_id"].to_numpy(), index=items["raw_id"])

    inter = inter.sort_values(["raw_user_id", "position"], kind="stable")
    user_codes, _ = pd.factorize(inter["raw_user_id"], sort=False)
    interactions = pd.DataFrame(
        {
            "user_id": user_codes.astype(np.int64),
            "item_id": item_index.loc[inter["raw_item_id"]].to_numpy(np.int64),
            "timestamp": inter["timestamp"].to_numpy(float),
            "raw_user_id": inter["raw_user_id"].to_numpy(str),
        }
    )
    interactions.insert(2, "position", interactions.groupby("user_id").cumcount().astype(np.int64))
    if "rating" in inter:
        interactions["rating"] = inter["rating"].to_numpy(float)

    lengths = interactions.groupby("user_id").size()
    stats = summarise(raw.name, items, lengths, filtering, cfg)
    return Prepared(items=items, interactions=interactions, stats=stats)


def nothing_left(name: str, filtering: dict[str, int], cfg: DataConfig) -> DataFormatError:
    """The error of a filter that leaves no user, saying what each filter removed."""
    return DataFormatError(
        f"dataset {name!r}: no user is left after filtering ({filtering['raw_interactions']} interactions; "
        f"{filtering.get('removed_low_rating', 0)} below data.min_rating, {filtering['removed_k_core']} removed "
        f"by the {cfg.k_core}-core, {filtering['removed_short_users_interactions']} of users with fewer than "
        f"{MIN_SEQUENCE} interactions): lower data.k_core or data.min_rating")


def summarise(name: str, items: pd.DataFrame, lengths: pd.Series, filtering: dict[str, int],
              cfg: DataConfig) -> dict:
    """``data/stats.json``: ``lengths`` holds each kept user's number of interactions (any order)."""
    empty_text = int(((items["title"].str.strip() == "") & (items["categories"].map(len) == 0)).sum())
    stats = {
        "dataset": name,
        "users": len(lengths),
        "items": len(items),
        "interactions": int(lengths.sum()),
        "avg_history_len": round(float(lengths.mean()), 4),
        "median_history_len": float(lengths.median()),
        "max_history_len": int(lengths.max()),
        "max_history": cfg.max_history,
        "histories_longer_than_cap": int((lengths - 1 > cfg.max_history).sum()),
        "items_without_text": empty_text,
        "filtering": filtering,
    }
    for key, value in filtering.items():
        if key.startswith("removed") and value:
            log.info("data: %s = %d", key, value)
    return stats
