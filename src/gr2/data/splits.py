"""Chronological leave-one-out: per user the last item is the test target, the second-to-last
the validation target, everything before is the training sequence."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
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
    """Build the per-user sequences from ``data/interactions.parquet`` (dense ids, positions).

    Vectorised (one ``tolist`` cut at the users' boundaries instead of a group-by of lists); the data
    stage writes the file sorted, so the sort is skipped when it is."""
    users = interactions["user_id"].to_numpy(np.int64)
    position = interactions["position"].to_numpy(np.int64)
    same_user = users[1:] == users[:-1]
    if not (np.all(users[1:] >= users[:-1]) and np.all(position[1:][same_user] >= position[:-1][same_user])):
        order = np.lexsort((position, users))  # stable: ties keep the file's order, as before
        users = users[order]
        items = interactions["item_id"].to_numpy(np.int64)[order]
    else:
        items = interactions["item_id"].to_numpy(np.int64)
    if len(users) == 0 or users[0] < 0:
        raise ValueError("user ids are not dense 0..U-1: was data/interactions.parquet written by gr2?")
    counts = np.bincount(users)
    if not counts.all():
        raise ValueError("user ids are not dense 0..U-1: was data/interactions.parquet written by gr2?")
    ends = np.cumsum(counts).tolist()
    flat = items.tolist()
    return Split(sequences=[flat[a:b] for a, b in zip([0, *ends[:-1]], ends)])
