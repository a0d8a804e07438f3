"""Orderings every results table shows next to the models (docs/method.md §1): the input (pre-rank)
order, random orders, a popularity order and the oracle. An *order* is a permutation of candidate
positions, best first."""

from __future__ import annotations

import numpy as np


def prerank_orders(n_lists: int, k: int) -> np.ndarray:
    """The candidates as the pre-ranker gave them."""
    return np.tile(np.arange(k), (n_lists, 1))


def random_orders(n_lists: int, k: int, seed: int) -> np.ndarray:
    """An independent uniform shuffle of every list."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_lists, k)), axis=1)


def score_orders(scores: np.ndarray) -> np.ndarray:
    """Sort each list by descending score; ties keep the pre-rank order."""
    return np.argsort(-np.asarray(scores, dtype=float), axis=1, kind="stable")


def popularity_orders(candidates: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Most-interacted items (in the training split) first."""
    return score_orders(item_counts[candidates])


def oracle_orders(labels: np.ndarray) -> np.ndarray:
    """Best possible order: highest label first (an upper bound, not a method)."""
    return score_orders(labels)


def train_item_counts(train_sequences: list[list[int]], n_items: int) -> np.ndarray:
    counts = np.zeros(n_items, dtype=np.int64)
    for seq in train_sequences:
        np.add.at(counts, seq, 1)
    return counts
