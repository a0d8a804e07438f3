"""Chronological leave-one-out: per user the last item is the test target, the second-to-last
the validation target, everything before is the training sequence."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pandas as pd


@dataclass
class Split:
    """Per-user sequences (index = dense user id, items oldest first)."""

    sequences: list[list[int]]

    @cached_property
    def train(self) -> list[list[int]]:
        """Training sequences: everything but the last two items (built once: callers index it per
        user, e.g. once per training list)."""
        return [s[:-2] for s in self.sequences]

    def examples(self, split: str) -> list[tuple[int, list[int], int]]:
        """``(user_id, full history before the target, target)`` for ``val`` or ``test``."""
        if split == "test":
            return [(u, s[:-1], s[-1]) for u, s in enumerate(self.sequences)]
        if split == "val":
            return [(u, s[:-2], s[-2]) for u, s in enumerate(self.sequences)]
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")


def sequences_from_interactions(interactions: pd.DataFrame) -> Split:
    """Build the per-user sequences from ``data/interactions.parquet`` (dense ids, positions)."""
    df = interactions.sort_values(["user_id", "position"], kind="stable")
    grouped = df.groupby("user_id", sort=True)["item_id"].apply(list)
    n_users = int(df["user_id"].max()) + 1
    if len(grouped) != n_users:
        raise ValueError("user ids are not dense 0..U-1: was data/interactions.parquet written by gr2?")
    return Split(sequences=[list(map(int, s)) for s in grouped.tolist()])
