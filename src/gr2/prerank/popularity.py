"""Popularity pre-ranker: an item's score is how often it occurs in the training sequences."""

from __future__ import annotations

import numpy as np

from .base import Preranker, _check_ids

__all__ = ["PopularityPreranker"]


class PopularityPreranker(Preranker):
    """Scores every item by its interaction count in the training sequences (same for every user)."""

    def __init__(self) -> None:
        self.n_items = 0
        self.counts: np.ndarray = np.zeros(0, dtype=np.float32)

    def fit(
        self,
        train_sequences: list[list[int]],
        n_items: int,
        valid: list[tuple[list[int], int]] | None = None,
    ) -> None:
        """Count item occurrences; ``valid`` is ignored."""
        _check_ids(train_sequences, n_items)
        self.n_items = int(n_items)
        flat = np.fromiter((i for s in train_sequences for i in s), dtype=np.int64)
        self.counts = np.bincount(flat, minlength=n_items).astype(np.float32)

    def score(self, histories: list[list[int]]) -> np.ndarray:
        """The count vector repeated for every history: float32 ``(len(histories), n_items)``."""
        return np.tile(self.counts, (len(histories), 1))
