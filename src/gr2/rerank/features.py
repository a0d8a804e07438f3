"""Per-candidate features for classic (learning-to-rank) re-rankers.

A :class:`FeatureBuilder` is fitted once on the item table and the TRAIN sequences, then turns a
DataFrame of K-candidate lists (the schema of ``candidates/*.parquet``, see ``docs/artifacts.md``)
into a float32 matrix with one row per (list, candidate), lists contiguous, candidates in pre-rank order.

Features (``FEATURE_NAMES``), for candidate ``c`` at 0-based pre-rank position ``p`` of a list with
history ``h_1..h_n`` (oldest first; ``h_n`` is the *last* item) and pre-rank scores ``s``:

list
    ``pos``            p (0 = the pre-ranker's best)
    ``score``          s_p (non-finite scores, e.g. ``-inf`` padding, become NaN)
    ``score_gap_best`` max(s) - s_p
    ``score_gap_next`` s_p - s_{p+1} (NaN for the last candidate)
    ``score_z``        (s_p - mean(s)) / std(s) within the list (0 when std = 0)
    ``hist_len``       n (same for every candidate of a list)
train-split statistics (``T[a, b]`` = number of consecutive pairs ``a -> b`` in the train sequences)
    ``log_pop``        log(1 + number of occurrences of c in the train sequences)
    ``seen``           1 if c is in the history, else 0
    ``trans_last``     T[h_n, c]
    ``trans_last_prob`` T[h_n, c] / sum_b T[h_n, b] (0 when h_n has no outgoing pair)
    ``trans_last3``    sum over the last 3 history items T[h_j, c]
    ``trans_rev_last`` T[c, h_n]
    ``trans_rev_last3`` sum over the last 3 history items T[c, h_j]
content (category path, most general first; TF-IDF of "title + categories", rows L2-normalised)
    ``cat_lcp_last``   length of the longest common category-path prefix of c and h_n
    ``cat_share_d{d}`` d = 1..4: share of the (windowed) history whose depth-d category prefix equals c's
                       (0 when c's path is shorter than d)
    ``tfidf_last``     cosine(c, h_n)
    ``tfidf_max``      max over the (windowed) history of cosine(c, h_j)
    ``tfidf_mean``     mean over the (windowed) history of cosine(c, h_j)
LLM score (only with ``FeatureBuilder(llm_scores=True)``: the fusion row of the eval, ``LLM_FEATURE_NAMES``;
read from the lists' ``llm_scores`` column, an LLM's score ``l`` of each candidate, higher = better)
    ``llm_score``      l_p (non-finite scores become NaN)
    ``llm_rank``       rank of c by l within its list (0 = the LLM's best; ties: pre-rank order; NaN where l is)
    ``llm_gap_best``   max(l) - l_p

"Windowed" history = the last ``history_window`` items (all of them by default up to 50). Everything is
vectorised over the whole DataFrame (the TF-IDF similarities in chunks of pairs), so ~20k lists x 10
candidates take a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["FEATURE_NAMES", "LLM_FEATURE_NAMES", "LLM_SCORES_COLUMN", "FeatureBuilder", "ListArrays",
           "list_arrays", "llm_score_features"]

CAT_SHARE_DEPTHS: tuple[int, ...] = (1, 2, 3, 4)

FEATURE_NAMES: tuple[str, ...] = (
    "pos",
    "score",
    "score_gap_best",
    "score_gap_next",
    "score_z",
    "hist_len",
    "log_pop",
    "seen",
    "trans_last",
    "trans_last_prob",
    "trans_last3",
    "trans_rev_last",
    "trans_rev_last3",
    "cat_lcp_last",
    *(f"cat_share_d{d}" for d in CAT_SHARE_DEPTHS),
    "tfidf_last",
    "tfidf_max",
    "tfidf_mean",
)

LLM_FEATURE_NAMES: tuple[str, ...] = ("llm_score", "llm_rank", "llm_gap_best")
"""Features of an LLM's per-candidate scores (:func:`llm_score_features`), after ``FEATURE_NAMES``."""

LLM_SCORES_COLUMN = "llm_scores"
"""Column of a lists DataFrame with an LLM's score of each candidate (pre-rank order)."""


# --------------------------------------------------------------------------- #
# list DataFrame -> arrays
# --------------------------------------------------------------------------- #
@dataclass
class ListArrays:
    """The columns of a lists DataFrame as numpy arrays.

    ``candidates``/``scores``/``labels`` are ``(n, K)``; the ragged histories are flattened into
    ``hist_flat`` with ``hist_len[i]`` items for list ``i`` (``hist_row`` repeats the list index).
    ``labels`` is ``None`` when the DataFrame has no ``labels`` column, ``llm_scores`` when it has no
    ``llm_scores`` column (:data:`LLM_SCORES_COLUMN`).
    """

    candidates: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    hist_flat: np.ndarray
    hist_len: np.ndarray
    hist_row: np.ndarray
    llm_scores: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.candidates.shape[0])

    @property
    def k(self) -> int:
        return int(self.candidates.shape[1])


def _stack(col: Sequence[Any], dtype: Any, name: str) -> np.ndarray:
    """Stack a column of equal-length sequences into a 2-D array."""
    if len(col) == 0:
        return np.zeros((0, 0), dtype=dtype)
    lens = {len(x) for x in col}
    if len(lens) != 1:
        raise ValueError(f"every list must have the same number of {name}; found lengths {sorted(lens)}")
    return np.asarray(np.stack([np.asarray(x, dtype=dtype) for x in col]), dtype=dtype)


def _column(lists_df: pd.DataFrame, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """An optional ``(n, K)`` float column (``None`` when absent), checked against the candidates' shape."""
    if name not in lists_df.columns:
        return None
    values = _stack(lists_df[name].tolist(), np.float64, name)
    if values.shape != shape:
        raise ValueError(f"{name} shape {values.shape} differs from candidates shape {shape}")
    return values


def list_arrays(lists_df: pd.DataFrame) -> ListArrays:
    """Convert a lists DataFrame (columns ``history``, ``candidates``, ``scores`` [, ``labels``,
    ``llm_scores``])."""
    for c in ("history", "candidates", "scores"):
        if c not in lists_df.columns:
            raise KeyError(f"lists DataFrame lacks column {c!r}")
    cands = _stack(lists_df["candidates"].tolist(), np.int64, "candidates")
    scores = _stack(lists_df["scores"].tolist(), np.float64, "scores")
    if scores.shape != cands.shape:
        raise ValueError(f"scores shape {scores.shape} differs from candidates shape {cands.shape}")
    labels = _column(lists_df, "labels", cands.shape)
    hists = lists_df["history"].tolist()
    hist_len = np.fromiter((len(h) for h in hists), dtype=np.int64, count=len(hists))
    if hist_len.sum() > 0:
        hist_flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in hists if len(h)])
    else:
        hist_flat = np.zeros(0, dtype=np.int64)
    hist_row = np.repeat(np.arange(len(hists), dtype=np.int64), hist_len)
    return ListArrays(cands, scores, labels, hist_flat, hist_len, hist_row,
                      _column(lists_df, LLM_SCORES_COLUMN, cands.shape))


def llm_score_features(scores: np.ndarray) -> dict[str, np.ndarray]:
    """``LLM_FEATURE_NAMES`` of ``(n, K)`` LLM scores (candidates in pre-rank order, higher = better),
    each ``(n, K)``: the score (non-finite → NaN), its rank within the list (0 = best; ties keep the
    pre-rank order) and the gap to the list's best score; all three NaN (missing, for LightGBM) where
    the score is, so a list the LLM did not score carries no LLM feature at all."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[~np.isfinite(s)] = np.nan
    order = np.argsort(np.where(np.isnan(s), np.inf, -s), axis=1, kind="stable")
    rank = np.empty(s.shape, dtype=np.float64)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(s.shape[1], dtype=np.float64), s.shape), axis=1)
    rank[np.isnan(s)] = np.nan
    best = np.max(np.where(np.isnan(s), -np.inf, s), axis=1, keepdims=True, initial=-np.inf)
    return {"llm_score": s, "llm_rank": rank, "llm_gap_best": best - s}


# --------------------------------------------------------------------------- #
# sorted-key lookup tables
# --------------------------------------------------------------------------- #
def _count_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and their counts."""
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq, counts.astype(np.float64)


def _lookup(table_keys: np.ndarray, table_vals: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``table_vals`` at ``query`` keys (0 where a key is absent); ``table_keys`` sorted unique."""
    out = np.zeros(query.shape, dtype=np.float64)
    if table_keys.size == 0 or query.size == 0:
        return out
    pos = np.searchsorted(table_keys, query)
    pos = np.minimum(pos, table_keys.size - 1)
    hit = table_keys[pos] == query
    out[hit] = table_vals[pos[hit]]
    return out


# --------------------------------------------------------------------------- #
# the builder
# --------------------------------------------------------------------------- #
class FeatureBuilder:
    """Fit once on items + train sequences; :meth:`transform` lists into a feature matrix.

    Args:
        history_window: the category share rates and the TF-IDF max/mean use the last
            ``history_window`` history items.
        max_cat_depth: category-path depth up to which prefixes are compared (for ``cat_lcp_last``).
        tfidf_params: keyword arguments of :class:`sklearn.feature_extraction.text.TfidfVectorizer`
            (default: lowercase unigrams, ``sublinear_tf=True``, ``strip_accents="unicode"``).
        pair_chunk: number of (candidate, history item) pairs per TF-IDF similarity chunk (memory bound).
        llm_scores: also compute ``LLM_FEATURE_NAMES`` from the lists' ``llm_scores`` column (an LLM's
            score of each candidate; :meth:`with_llm_scores` turns a fitted builder into one).
    """

    def __init__(
        self,
        history_window: int = 50,
        max_cat_depth: int = 8,
        tfidf_params: dict[str, Any] | None = None,
        pair_chunk: int = 500_000,
        llm_scores: bool = False,
    ) -> None:
        if history_window < 1:
            raise ValueError("history_window must be >= 1")
        if max_cat_depth < max(CAT_SHARE_DEPTHS):
            raise ValueError(f"max_cat_depth must be >= {max(CAT_SHARE_DEPTHS)}")
        self.history_window = int(history_window)
        self.max_cat_depth = int(max_cat_depth)
        self.tfidf_params = dict(tfidf_params or {})
        self.pair_chunk = int(pair_chunk)
        self.llm_scores = bool(llm_scores)
        self.fitted = False

    # ------------------------------------------------------------------ fit
    def fit(self, items: pd.DataFrame, train_sequences: Sequence[Sequence[int]]) -> FeatureBuilder:
        """Learn popularity, transition counts, category prefixes and the TF-IDF matrix.

        Args:
            items: one row per item with ``item_id`` (dense ids; the index is used when the column is
                absent), ``title`` (str) and ``categories`` (list of str, most general first). Items
                missing from the table get empty text and no category.
            train_sequences: the TRAIN part of every user's sequence (oldest first). Never pass the
                validation/test targets here: the transition and popularity features would leak them.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer

        ids = (items["item_id"] if "item_id" in items.columns else pd.Series(items.index)).to_numpy()
        ids = ids.astype(np.int64)
        seq_max = max((max(s) for s in train_sequences if len(s)), default=-1)
        n_items = int(max(ids.max(initial=-1), seq_max) + 1)
        if n_items <= 0:
            raise ValueError("no items")
        if ids.size and ids.min() < 0:
            raise ValueError("item ids must be >= 0")
        self.n_items = n_items

        titles = [""] * n_items
        cats: list[list[str]] = [[] for _ in range(n_items)]
        tcol = items["title"].tolist() if "title" in items.columns else [""] * len(ids)
        ccol = items["categories"].tolist() if "categories" in items.columns else [[]] * len(ids)
        for i, t, c in zip(ids.tolist(), tcol, ccol):
            titles[i] = "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
            cats[i] = [] if c is None or (isinstance(c, float) and np.isnan(c)) else [str(x) for x in c]

        # category prefix ids: prefix[i, d-1] = id of the tuple cats[i][:d], -1 if the path is shorter
        prefix = np.full((n_items, self.max_cat_depth), -1, dtype=np.int64)
        vocab: dict[tuple[str, ...], int] = {}
        for i, path in enumerate(cats):
            for d in range(1, min(len(path), self.max_cat_depth) + 1):
                prefix[i, d - 1] = vocab.setdefault(tuple(path[:d]), len(vocab))
        self.cat_prefix = prefix
        self.n_prefixes = max(len(vocab), 1)

        # TF-IDF over "title + categories"
        params = {"lowercase": True, "sublinear_tf": True, "strip_accents": "unicode", "dtype": np.float32}
        params.update(self.tfidf_params)
        docs = [f"{t} {' '.join(c)}".strip() for t, c in zip(titles, cats)]
        vec = TfidfVectorizer(**params)
        try:
            tfidf = vec.fit_transform(docs)
        except ValueError:  # empty vocabulary (no text at all)
            tfidf = sp.csr_matrix((n_items, 1), dtype=np.float32)
        self.tfidf = sp.csr_matrix(tfidf, dtype=np.float32)
        self.tfidf.sort_indices()
        self.tfidf_vocab_size = int(self.tfidf.shape[1])

        # popularity and consecutive-pair transition counts
        seqs = [np.asarray(s, dtype=np.int64) for s in train_sequences if len(s)]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= n_items):
            raise ValueError("train sequence item ids out of range")
        self.pop = np.bincount(flat, minlength=n_items).astype(np.float64)
        src = np.concatenate([s[:-1] for s in seqs]) if seqs else np.zeros(0, dtype=np.int64)
        dst = np.concatenate([s[1:] for s in seqs]) if seqs else np.zeros(0, dtype=np.int64)
        self.trans_keys, self.trans_counts = _count_table(src * n_items + dst)
        self.out_degree = np.bincount(src, minlength=n_items).astype(np.float64)
        self.fitted = True
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        """``FEATURE_NAMES``, then ``LLM_FEATURE_NAMES`` with ``llm_scores``: the matrix's columns."""
        return FEATURE_NAMES + (LLM_FEATURE_NAMES if self.llm_scores else ())

    def with_llm_scores(self) -> FeatureBuilder:
        """A copy of this fitted builder that also computes the LLM-score features."""
        return FeatureBuilder.from_state_dict({**self.state_dict(), "llm_scores": True})

    # ------------------------------------------------------------ transform
    def _trans(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """T[a, b] elementwise (0 where a or b is negative, i.e. padding)."""
        ok = (a >= 0) & (b >= 0)
        out = np.zeros(a.shape, dtype=np.float64)
        out[ok] = _lookup(self.trans_keys, self.trans_counts, a[ok] * self.n_items + b[ok])
        return out

    def _pair_cosine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """TF-IDF cosine of item pairs ``(a[j], b[j])`` (rows are L2-normalised)."""
        out = np.zeros(a.shape[0], dtype=np.float64)
        for s in range(0, a.shape[0], self.pair_chunk):
            e = min(a.shape[0], s + self.pair_chunk)
            prod = self.tfidf[a[s:e]].multiply(self.tfidf[b[s:e]])
            out[s:e] = np.asarray(prod.sum(axis=1), dtype=np.float64).ravel()
        return out

    def transform(self, lists_df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Features of every candidate of every list.

        Returns:
            ``X`` float32 ``(n_lists * K, F)`` (list ``i``'s candidates in rows ``i*K .. i*K+K-1``, in
            pre-rank order), ``groups`` int64 ``(n_lists,)`` all equal to K (LightGBM group sizes), and
            the feature names (:attr:`feature_names`).
        """
        return self.transform_arrays(list_arrays(lists_df))

    def transform_arrays(self, la: ListArrays) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """:meth:`transform` on already converted arrays."""
        if not self.fitted:
            raise RuntimeError("FeatureBuilder.fit must be called first")
        n, k = la.n, la.k
        names = list(self.feature_names)
        groups = np.full(n, k, dtype=np.int64)
        if n == 0:
            return np.zeros((0, len(names)), dtype=np.float32), groups, names
        cands = la.candidates
        if cands.min() < 0 or cands.max() >= self.n_items:
            raise ValueError(f"candidate ids must lie in [0, {self.n_items})")
        if la.hist_flat.size and (la.hist_flat.min() < 0 or la.hist_flat.max() >= self.n_items):
            raise ValueError(f"history ids must lie in [0, {self.n_items})")
        f: dict[str, np.ndarray] = {}

        # ---- list features
        s = la.scores.astype(np.float64).copy()
        s[~np.isfinite(s)] = np.nan
        f["pos"] = np.broadcast_to(np.arange(k, dtype=np.float64), (n, k))
        f["score"] = s
        with np.errstate(all="ignore"):
            best = np.nanmax(np.where(np.isnan(s), -np.inf, s), axis=1, keepdims=True)
            f["score_gap_best"] = best - s
            nxt = np.full_like(s, np.nan)
            nxt[:, :-1] = s[:, :-1] - s[:, 1:]
            f["score_gap_next"] = nxt
            mu = np.nanmean(s, axis=1, keepdims=True)
            sd = np.nanstd(s, axis=1, keepdims=True)
            z = (s - mu) / np.where(sd > 0, sd, 1.0)
            f["score_z"] = np.where(np.isnan(s), np.nan, np.where(sd > 0, z, 0.0))
        f["hist_len"] = np.broadcast_to(la.hist_len[:, None].astype(np.float64), (n, k))

        # ---- history helpers: last item and last 3 (padded with -1)
        ends = np.cumsum(la.hist_len)
        last3 = np.full((n, 3), -1, dtype=np.int64)  # column 0 = last, 1 = second to last, ...
        for j in range(3):
            has = la.hist_len > j
            last3[has, j] = la.hist_flat[ends[has] - 1 - j]
        last = last3[:, 0]
        last_b = np.broadcast_to(last[:, None], (n, k))

        # ---- train statistics
        f["log_pop"] = np.log1p(self.pop[cands])
        n_it = self.n_items
        hist_keys = np.unique(la.hist_row * n_it + la.hist_flat)
        row_b = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, k))
        f["seen"] = np.isin(row_b * n_it + cands, hist_keys).astype(np.float64)
        f["trans_last"] = self._trans(last_b, cands)
        deg = np.where(last >= 0, self.out_degree[np.maximum(last, 0)], 0.0)[:, None]
        f["trans_last_prob"] = np.where(deg > 0, f["trans_last"] / np.where(deg > 0, deg, 1.0), 0.0)
        fwd = np.zeros((n, k))
        rev = np.zeros((n, k))
        for j in range(3):
            hj = np.broadcast_to(last3[:, j : j + 1], (n, k))
            fwd += self._trans(hj, cands)
            rev += self._trans(cands, hj)
        f["trans_last3"] = fwd
        f["trans_rev_last"] = self._trans(cands, last_b)
        f["trans_rev_last3"] = rev

        # ---- windowed history (last `history_window` items of each list)
        pos_in_hist = np.arange(la.hist_flat.size) - np.repeat(ends - la.hist_len, la.hist_len)
        keep = pos_in_hist >= np.repeat(la.hist_len - self.history_window, la.hist_len)
        w_items = la.hist_flat[keep]
        w_row = la.hist_row[keep]
        w_len = np.bincount(w_row, minlength=n).astype(np.float64)

        # ---- categories
        cp = self.cat_prefix
        cand_pref = cp[cands]  # (n, k, D)
        last_pref = np.where(last[:, None] >= 0, cp[np.maximum(last, 0)], -1)  # (n, D)
        match = (cand_pref == last_pref[:, None, :]) & (cand_pref >= 0)
        f["cat_lcp_last"] = np.cumprod(match, axis=2).sum(axis=2).astype(np.float64)
        hist_pref = cp[w_items]  # (m, D)
        npf = self.n_prefixes
        for d in CAT_SHARE_DEPTHS:
            hp = hist_pref[:, d - 1]
            ok = hp >= 0
            tk, tv = _count_table(w_row[ok] * npf + hp[ok])
            cpd = cand_pref[:, :, d - 1]
            cnt = np.where(cpd >= 0, _lookup(tk, tv, row_b * npf + np.maximum(cpd, 0)), 0.0)
            f[f"cat_share_d{d}"] = np.where(w_len[:, None] > 0, cnt / np.maximum(w_len[:, None], 1.0), 0.0)

        # ---- TF-IDF cosine
        has_last = last >= 0
        tl = np.zeros((n, k))
        if has_last.any():
            tl[has_last] = self._pair_cosine(
                cands[has_last].ravel(), np.repeat(last[has_last], k)
            ).reshape(-1, k)
        f["tfidf_last"] = tl
        # pairs (candidate slot, windowed history item) for every list
        m = w_items.size
        if m:
            # for each history item of list r, pair with the K candidates of list r
            pair_c = cands[w_row].ravel()  # (m*k,)
            pair_h = np.repeat(w_items, k)
            sims = self._pair_cosine(pair_c, pair_h).reshape(m, k)
            # w_row is sorted (lists are contiguous): reduce each non-empty list's block of rows
            nonempty = w_len > 0
            starts = (np.cumsum(w_len) - w_len)[nonempty].astype(np.int64)
            tmax = np.zeros((n, k))
            tmean = np.zeros((n, k))
            tmax[nonempty] = np.maximum.reduceat(sims, starts, axis=0)
            tmean[nonempty] = np.add.reduceat(sims, starts, axis=0) / w_len[nonempty, None]
            f["tfidf_max"] = tmax
            f["tfidf_mean"] = tmean
        else:
            f["tfidf_max"] = np.zeros((n, k))
            f["tfidf_mean"] = np.zeros((n, k))

        if self.llm_scores:
            if la.llm_scores is None:
                raise KeyError(f"the LLM-score features need a {LLM_SCORES_COLUMN!r} column")
            f.update(llm_score_features(la.llm_scores))

        X = np.empty((n * k, len(names)), dtype=np.float32)
        for j, name in enumerate(names):
            X[:, j] = np.asarray(f[name], dtype=np.float64).reshape(-1)
        return X, groups, names

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted builder (numpy arrays and plain values)."""
        if not self.fitted:
            raise RuntimeError("FeatureBuilder is not fitted")
        return {
            "history_window": self.history_window,
            "max_cat_depth": self.max_cat_depth,
            "tfidf_params": self.tfidf_params,
            "pair_chunk": self.pair_chunk,
            "llm_scores": self.llm_scores,
            "n_items": self.n_items,
            "cat_prefix": self.cat_prefix,
            "n_prefixes": self.n_prefixes,
            "tfidf": self.tfidf,
            "tfidf_vocab_size": self.tfidf_vocab_size,
            "pop": self.pop,
            "trans_keys": self.trans_keys,
            "trans_counts": self.trans_counts,
            "out_degree": self.out_degree,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureBuilder:
        """Inverse of :meth:`state_dict`."""
        fb = cls(
            history_window=state["history_window"],
            max_cat_depth=state["max_cat_depth"],
            tfidf_params=state["tfidf_params"],
            pair_chunk=state["pair_chunk"],
            llm_scores=state.get("llm_scores", False),  # absent from builders saved before the fusion row
        )
        for key in (
            "n_items", "cat_prefix", "n_prefixes", "tfidf", "tfidf_vocab_size", "pop",
            "trans_keys", "trans_counts", "out_degree",
        ):  # fmt: skip
            setattr(fb, key, state[key])
        fb.fitted = True
        return fb
