"""Pre-ranker interface and the helpers every pre-ranker shares.

A pre-ranker scores the whole catalogue for a user history; :func:`top_k` turns those scores into the
K-item candidate lists the LLM re-ranker later permutes, and :func:`full_catalogue_metrics` measures a
pre-ranker as a retriever over the full catalogue (one held-out target per user).

Items already in a user's history are masked out by default (``exclude_seen=True``): on Amazon Beauty no
test or validation target repeats a history item, and an unfiltered SASRec puts the user's own last item
first for most users (see ``docs/method.md`` §2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from gr2.metrics.ranking import target_rank_metrics

__all__ = ["Preranker", "top_k", "full_catalogue_metrics", "mask_seen_"]


class Preranker(ABC):
    """Scores every catalogue item for a user history.

    Item ids are 0-based integers in ``[0, n_items)``; histories are oldest first.
    """

    #: catalogue size, set by :meth:`fit`
    n_items: int

    @abstractmethod
    def fit(
        self,
        train_sequences: list[list[int]],
        n_items: int,
        valid: list[tuple[list[int], int]] | None = None,
    ) -> None:
        """Learn from training sequences. ``valid`` holds (history, target) pairs for early stopping."""

    @abstractmethod
    def score(self, histories: list[list[int]]) -> np.ndarray:
        """Return float32 scores of shape ``(len(histories), n_items)``; higher is better."""


def mask_seen_(scores: np.ndarray, histories: Sequence[Sequence[int]]) -> np.ndarray:
    """Set ``scores[i, h]`` to ``-inf`` for every item ``h`` in ``histories[i]`` (in place; returns scores)."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if lengths.sum() == 0:
        return scores
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    cols = np.fromiter((int(i) for h in histories for i in h), dtype=np.int64, count=int(lengths.sum()))
    scores[rows, cols] = -np.inf
    return scores


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row, best first; equal scores ordered by lower item id (deterministic)."""
    n, n_items = scores.shape
    k = min(k, n_items)
    if k == n_items:
        idx = np.broadcast_to(np.arange(n_items, dtype=np.int64), (n, n_items)).copy()
    else:
        idx = np.argpartition(-scores, k - 1, axis=1)[:, :k].astype(np.int64)
        # argpartition picks arbitrary members of a tie that straddles the k-th place: fix those rows so
        # that the lowest item ids among the tied scores are the ones kept.
        sel = np.take_along_axis(scores, idx, axis=1)
        kth = sel.min(axis=1)
        n_ge = (scores >= kth[:, None]).sum(axis=1)
        for r in np.flatnonzero(n_ge > k):
            row = scores[r]
            above = np.flatnonzero(row > kth[r])
            tied = np.flatnonzero(row == kth[r])[: k - len(above)]
            idx[r] = np.concatenate([above, tied])
    sel = np.take_along_axis(scores, idx, axis=1)
    order = np.lexsort((idx, -sel), axis=-1)  # primary: score desc, secondary: id asc
    idx = np.take_along_axis(idx, order, axis=1)
    sel = np.take_along_axis(sel, order, axis=1)
    return idx, sel.astype(np.float32, copy=False)


def top_k(
    preranker: Preranker,
    histories: list[list[int]],
    k: int = 10,
    exclude_seen: bool = True,
    batch_size: int = 512,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate lists: item ids ``(n, k)`` int64 and their scores ``(n, k)`` float32, best first.

    With ``exclude_seen`` every item of a user's history is set to ``-inf`` before the selection, so a
    seen item can only appear when fewer than ``k`` unseen items exist (it then carries score ``-inf``).
    Ties are broken by lower item id.
    """
    n = len(histories)
    ids = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k), dtype=np.float32)
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc="top-k", disable=not progress or n <= batch_size, leave=False):
        batch = histories[s : s + batch_size]
        scores = np.array(preranker.score(batch), dtype=np.float32, copy=True)
        if scores.ndim != 2 or scores.shape[0] != len(batch):
            raise ValueError(f"score() returned shape {scores.shape} for {len(batch)} histories")
        if k > scores.shape[1]:
            raise ValueError(f"k={k} exceeds the catalogue size {scores.shape[1]}")
        if exclude_seen:
            mask_seen_(scores, batch)
        ids[s : s + len(batch)], vals[s : s + len(batch)] = _top_k_rows(scores, k)
    return ids, vals


def full_catalogue_metrics(
    preranker: Preranker,
    histories: list[list[int]],
    targets: Sequence[int],
    ks: Sequence[int] = (10,),
    exclude_seen: bool = True,
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, float]:
    """Full-catalogue Recall@k and NDCG@k with one target per user.

    Returns ``{"R@k": ..., "N@k": ..., "n": n_users}``
    (:func:`gr2.metrics.ranking.target_rank_metrics`: a hit at 1-based rank r scores ``1/log2(r+1)``,
    a miss 0). Computed from the top-max(ks) lists of :func:`top_k`.
    """
    if len(histories) != len(targets):
        raise ValueError("histories and targets differ in length")
    kmax = max(ks)
    ids, _ = top_k(preranker, histories, k=kmax, exclude_seen=exclude_seen, batch_size=batch_size,
                   progress=progress)
    tgt = np.asarray(targets, dtype=np.int64)[:, None]
    hit = ids == tgt  # at most one True per row
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)  # 1-based; 0 = not returned
    return {**target_rank_metrics(rank, ks), "n": float(len(histories))}


def _check_ids(sequences: Sequence[Sequence[int]], n_items: int) -> None:
    """Raise if any item id falls outside ``[0, n_items)``."""
    lo, hi = math.inf, -math.inf
    for s in sequences:
        if len(s):
            lo, hi = min(lo, min(s)), max(hi, max(s))
    if lo < 0 or hi >= n_items:
        raise ValueError(f"item ids must lie in [0, {n_items}); found range [{lo}, {hi}]")
