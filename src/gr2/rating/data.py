"""The rating task's examples, from the data stage's files (``data/interactions.parquet`` with its
``rating`` column, ``data/items.parquet``).

Per user, in time order (the data stage's leave-one-out split, docs/artifacts.md): the last rating
is the ``test`` target, the one before the ``val`` target, the one before that the ``train`` target
(the RL prompts); an example's history is every rating before its target, the ``max_history`` most
recent shown. A model fitted for a split (the baselines) sees every rating before that split's
targets: all but each user's last for ``test``, all but the last two for ``val``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from gr2.checks import ConfigError
from gr2.prompts.rating import RATING_MAX, RATING_MIN

__all__ = ["HELD_OUT", "Example", "examples", "fit_ratings", "rated_sequences"]

#: Ratings held out at the end of each user's sequence: the split's target and those after it.
HELD_OUT = {"test": 1, "val": 2, "train": 3}


@dataclass(frozen=True)
class Example:
    user: int
    history: list[tuple[int, float]]
    """``(item_id, rating)`` oldest first, the most recent ``max_history``."""
    item: int
    rating: float


def rated_sequences(interactions: pd.DataFrame) -> list[list[tuple[int, float]]]:
    """Per dense user id, ``(item_id, rating)`` in time order. Refuses data without usable ratings
    (the rating task needs explicit 1-5 ratings, e.g. MovieLens)."""
    if "rating" not in interactions:
        raise ConfigError("the rating task needs explicit ratings: data/interactions.parquet has no rating "
                          "column (use a dataset with ratings, e.g. --dataset ml-1m, and re-run the data stage "
                          "with --force data if it was made before ratings were kept)")
    r = interactions["rating"].to_numpy(float)
    bad = ~np.isfinite(r) | (r < RATING_MIN) | (r > RATING_MAX)
    if bad.any():
        raise ConfigError(f"the rating task reads ratings from {RATING_MIN:g} to {RATING_MAX:g}: "
                          f"{int(bad.sum())} rating(s) are missing or outside (e.g. {r[bad][0]!r})")
    df = interactions.sort_values(["user_id", "position"], kind="stable")
    pairs = list(zip(df["item_id"].astype(int), df["rating"].astype(float)))
    bounds = np.cumsum([0, *df.groupby("user_id", sort=True).size()])
    return [pairs[a:b] for a, b in pairwise(bounds)]


def examples(sequences: list[list[tuple[int, float]]], split: str, max_history: int) -> list[Example]:
    """One example per user with at least one rating before the split's target."""
    held = HELD_OUT[split]
    out = []
    for user, seq in enumerate(sequences):
        if len(seq) > held:
            item, rating = seq[-held]
            out.append(Example(user, seq[:-held][-max_history:], item, rating))
    return out


def fit_ratings(sequences: list[list[tuple[int, float]]], split: str) -> pd.DataFrame:
    """``user``, ``item``, ``rating`` of every rating before the split's targets (what the baselines fit)."""
    held = HELD_OUT[split]
    rows = [(u, i, r) for u, seq in enumerate(sequences) for i, r in seq[:-held]]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])
