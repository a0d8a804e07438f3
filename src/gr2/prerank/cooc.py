"""Item→item transition (co-occurrence) pre-ranker.

Counts consecutive pairs ``(a, b)`` in the training sequences into a sparse matrix ``T[a, b]``. A user's
score vector is ``Σ_j w_j · T[h_{-j}]`` over the last ``m`` history items (``w_j = decay**(j-1)``: 1, 0.5,
0.25 by default) plus a tiny popularity term that only orders items whose transition scores are equal.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Preranker, _check_ids

__all__ = ["CooccurrencePreranker"]


class CooccurrencePreranker(Preranker):
    """Sparse item→item transition counts from the training sequences.

    Args:
        m: number of most recent history items whose outgoing transitions are summed.
        decay: weight ratio between successive history items (most recent has weight 1).
        pop_weight: scale of the popularity tie-breaker; the term is ``pop_weight * count / (max+1)``,
            below any difference the transition part can make with the default weights.
    """

    def __init__(self, m: int = 3, decay: float = 0.5, pop_weight: float = 1e-3) -> None:
        if m < 1:
            raise ValueError("m must be >= 1")
        self.m = int(m)
        self.decay = float(decay)
        self.pop_weight = float(pop_weight)
        self.n_items = 0
        self.transitions: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self.pop_term: np.ndarray = np.zeros(0, dtype=np.float32)

    def fit(
        self,
        train_sequences: list[list[int]],
        n_items: int,
        valid: list[tuple[list[int], int]] | None = None,
    ) -> None:
        """Build the transition matrix and popularity term; ``valid`` is ignored."""
        _check_ids(train_sequences, n_items)
        self.n_items = int(n_items)
        src = np.fromiter((a for s in train_sequences for a in s[:-1]), dtype=np.int64)
        dst = np.fromiter((b for s in train_sequences for b in s[1:]), dtype=np.int64)
        t = sp.coo_matrix((np.ones(len(src), dtype=np.float32), (src, dst)), shape=(n_items, n_items))
        self.transitions = t.tocsr()  # duplicates summed
        self.transitions.sum_duplicates()
        flat = np.fromiter((i for s in train_sequences for i in s), dtype=np.int64)
        counts = np.bincount(flat, minlength=n_items).astype(np.float64)
        self.pop_term = (self.pop_weight * counts / (counts.max(initial=0.0) + 1.0)).astype(np.float32)

    def score(self, histories: list[list[int]]) -> np.ndarray:
        """float32 ``(len(histories), n_items)``: weighted outgoing transitions of the last ``m`` items."""
        n = len(histories)
        rows, cols, w = [], [], []
        for r, h in enumerate(histories):
            for j, item in enumerate(reversed(h[-self.m :])):
                rows.append(r)
                cols.append(item)
                w.append(self.decay**j)
        # (n, n_items) sparse "recent items" matrix times the transition matrix
        recent = sp.csr_matrix(
            (np.asarray(w, dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(n, self.n_items),
        )
        out = (recent @ self.transitions).toarray().astype(np.float32, copy=False)
        out += self.pop_term[None, :]
        return out
