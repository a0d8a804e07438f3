"""Ranking metrics for re-ranked candidate lists (numpy only).

Conventions
-----------
* A ranked list is given as ``ranked_labels``: the graded relevance labels
  (finite numbers >= 0) of the candidates *in the order the model ranked them*,
  position 1 first. Label ``0`` means not relevant, ``> 0`` relevant
  (e.g. 1 = click, 2 = click + conversion).
* Ranks are 1-based: the first element of ``ranked_labels`` has rank 1.
* Degenerate lists — the one rule for every gr2 metric: a list with no relevant
  candidate makes recall, NDCG and MRR undefined; they return ``float('nan')``.
  ``pairwise_auc`` returns ``nan`` when the list has no pair of candidates with
  different labels (no positive, or all labels equal). Aggregation
  (:func:`evaluate_rankings`) and the bootstrap (:mod:`gr2.metrics.bootstrap`)
  skip ``nan`` values per metric. The RL rewards (:mod:`gr2.rl.rewards`) use these
  same functions and read an undefined metric as "every order is perfect".
* A cutoff ``k`` larger than the list length is allowed and behaves like
  ``k = len(ranked_labels)``.

NDCG uses the exponential gain ``2**g - 1`` (learning-to-rank convention).
Note that ``trec_eval``'s ``ndcg_cut`` uses the *linear* gain ``g``; both agree
on binary labels. The discount ``1 / log2(rank + 1)`` is the same in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "LabelsLike",
    "OrderLike",
    "evaluate_rankings",
    "labels_in_order",
    "metric_keys",
    "mrr",
    "ndcg_at_k",
    "pairwise_auc",
    "pairwise_auc_counts",
    "per_list_metrics",
    "rank_of",
    "recall_at_k",
    "target_rank_metrics",
]

#: A 1-D sequence of graded relevance labels (numbers >= 0).
LabelsLike = Union[Sequence[float], npt.NDArray[Any]]
#: A 1-D sequence of candidate indices (a permutation of ``0..K-1``).
OrderLike = Union[Sequence[int], npt.NDArray[np.integer[Any]]]

DEFAULT_RECALL_KS: tuple[int, ...] = (1, 3, 5, 10)
DEFAULT_NDCG_KS: tuple[int, ...] = (3, 5, 10)


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _as_labels(ranked_labels: LabelsLike) -> npt.NDArray[np.float64]:
    """Convert to a 1-D float64 array and validate (finite, >= 0)."""
    arr = np.asarray(ranked_labels, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size:
        lo = arr.min()  # nan propagates through min
        if not (lo >= 0.0 and np.isfinite(arr.max())):
            if not np.isfinite(arr).all():
                raise ValueError("labels must be finite (no nan/inf)")
            raise ValueError(f"labels must be >= 0, got min {lo}")
    return arr


def _check_k(k: int) -> int:
    """Validate a cutoff: a positive integer."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _as_order(order: OrderLike, n: int | None = None) -> npt.NDArray[np.int64]:
    """Convert ``order`` to an int64 array and check it is a permutation of 0..n-1.

    ``n`` defaults to ``len(order)``.
    """
    arr = np.asarray(order)
    if arr.ndim != 1:
        raise ValueError(f"order must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"order must contain integers, got dtype {arr.dtype}")
    size = arr.shape[0]
    if n is None:
        n = size
    if size != n:
        raise ValueError(
            f"order is not a permutation of 0..{n - 1}: it has {size} entries "
            f"but there are {n} candidates"
        )
    if size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n:
            raise ValueError(
                f"order is not a permutation of 0..{n - 1}: "
                f"index out of range (min {lo}, max {hi})"
            )
        counts = np.bincount(arr, minlength=n)
        if np.any(counts != 1):
            dup = np.flatnonzero(counts > 1).tolist()
            missing = np.flatnonzero(counts == 0).tolist()
            raise ValueError(
                f"order is not a permutation of 0..{n - 1}: "
                f"duplicated indices {dup}, missing indices {missing}"
            )
    return arr.astype(np.int64, copy=False)


_DISC_CACHE: npt.NDArray[np.float64] = 1.0 / np.log2(np.arange(2, 258, dtype=np.float64))
_DISC_CACHE.flags.writeable = False
_MASK_CACHE: dict[int, npt.NDArray[np.bool_]] = {}


def _discounts(n: int) -> npt.NDArray[np.float64]:
    """``1 / log2(rank + 1)`` for ranks 1..n."""
    if n <= _DISC_CACHE.shape[0]:
        return _DISC_CACHE[:n]
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _upper_mask(n: int) -> npt.NDArray[np.bool_]:
    """Boolean ``n x n`` mask of ``p < q`` (cached for small ``n``; read-only)."""
    mask = _MASK_CACHE.get(n)
    if mask is None:
        mask = np.triu(np.ones((n, n), dtype=bool), k=1)
        mask.flags.writeable = False
        if n <= 256:
            _MASK_CACHE[n] = mask
    return mask


# --------------------------------------------------------------------------- #
# single-list metrics
# --------------------------------------------------------------------------- #
def labels_in_order(order: OrderLike, labels: LabelsLike) -> npt.NDArray[np.float64]:
    """Return the labels arranged in ranked order: ``out[r] = labels[order[r]]``.

    Args:
        order: permutation of the candidate indices ``0..K-1``, best first.
        labels: relevance label per candidate index (length ``K``).

    Raises:
        ValueError: if ``order`` is not a permutation of ``0..len(labels)-1``
            or the labels are invalid (negative / non-finite / not 1-D).
    """
    lab = _as_labels(labels)
    idx = _as_order(order, n=lab.shape[0])
    return lab[idx]


def rank_of(order: OrderLike, index: int) -> int:
    """1-based rank of candidate ``index`` in ``order`` (``order`` must be a permutation).

    ``rank_of(order, i) = r + 1`` where ``order[r] == i``.

    Raises:
        ValueError: if ``order`` is not a permutation or ``index`` is not in it.
    """
    arr = _as_order(order)
    hits = np.flatnonzero(arr == index)
    if hits.size == 0:
        raise ValueError(f"index {index} is not in order (K={arr.shape[0]})")
    return int(hits[0]) + 1


def recall_at_k(ranked_labels: LabelsLike, k: int) -> float:
    """Recall@k = |{relevant in top k}| / |{relevant}|.

    Relevant means label > 0 (the grade is ignored). With exactly one relevant
    candidate this is the hit rate ``1[rank <= k]``.

    Returns:
        The recall in [0, 1], or ``nan`` if the list has no relevant candidate.
    """
    k = _check_k(k)
    rel = _as_labels(ranked_labels) > 0
    n_rel = int(rel.sum())
    if n_rel == 0:
        return math.nan
    return float(rel[:k].sum()) / n_rel


def ndcg_at_k(ranked_labels: LabelsLike, k: int) -> float:
    """NDCG@k with exponential gain.

    ``DCG@k = sum_{r=1..min(k,K)} (2**g_r - 1) / log2(r + 1)`` where ``g_r`` is
    the label at rank ``r``; ``NDCG@k = DCG@k / IDCG@k`` with ``IDCG@k`` the
    DCG@k of the same labels sorted in decreasing order. With a single binary
    positive at rank ``r`` this is ``1 / log2(r + 1)`` if ``r <= k`` else 0.

    Returns:
        The NDCG in [0, 1], or ``nan`` if the list has no relevant candidate.
    """
    k = _check_k(k)
    lab = _as_labels(ranked_labels)
    if not np.any(lab > 0):
        return math.nan
    m = min(k, lab.shape[0])
    disc = _discounts(m)
    gains = np.exp2(lab) - 1.0
    dcg = float(np.dot(gains[:m], disc))
    ideal = np.sort(gains)[::-1][:m]
    idcg = float(np.dot(ideal, disc))
    return dcg / idcg


def mrr(ranked_labels: LabelsLike) -> float:
    """Reciprocal rank of the first relevant candidate: ``1 / min{r : g_r > 0}``.

    (Averaging over lists gives the mean reciprocal rank.)

    Returns:
        A value in (0, 1], or ``nan`` if the list has no relevant candidate.
    """
    rel = np.flatnonzero(_as_labels(ranked_labels) > 0)
    if rel.size == 0:
        return math.nan
    return 1.0 / (int(rel[0]) + 1)


def _auc_counts_unchecked(lab: npt.NDArray[np.float64]) -> tuple[int, int]:
    """:func:`pairwise_auc_counts` on an already validated 1-D float array."""
    n = lab.shape[0]
    if n < 2:
        return 0, 0
    # O(K^2) pair matrix; fine for re-ranking list sizes (K up to a few thousand).
    gt = lab[:, None] > lab[None, :]  # gt[p, q] = g_p > g_q (p, q are positions)
    n_pairs_total = int(np.count_nonzero(gt))  # each differing pair counted once
    if n_pairs_total == 0:
        return 0, 0
    # correct: the more relevant one is at the earlier position (p < q)
    correct = int(np.count_nonzero(gt & _upper_mask(n)))
    return correct, n_pairs_total


def _auc_unchecked(lab: npt.NDArray[np.float64]) -> float:
    """:func:`pairwise_auc` on an already validated 1-D float array."""
    correct, n_pairs_total = _auc_counts_unchecked(lab)
    if n_pairs_total == 0:
        return math.nan
    return correct / n_pairs_total


def pairwise_auc_counts(ranked_labels: LabelsLike) -> tuple[int, int]:
    """The integer counts behind :func:`pairwise_auc`: ``(correct, total)``.

    ``total = |{(i, j) : g_i > g_j}|`` (pairs with different labels) and
    ``correct`` = those with the more relevant candidate ranked above, so
    ``pairwise_auc = correct / total`` (``nan`` when ``total == 0``). Exact
    integers, for callers that compare AUCs of one list without rounding (the
    AUC reward's gain).
    """
    return _auc_counts_unchecked(_as_labels(ranked_labels))


def pairwise_auc(ranked_labels: LabelsLike) -> float:
    """Pairwise ranking accuracy (AUC generalised to graded labels).

    ``AUC = |{(i, j) : g_i > g_j, rank_i < rank_j}| / |{(i, j) : g_i > g_j}|``,
    i.e. among all pairs of candidates with *different* labels, the share in
    which the more relevant one is ranked above the less relevant one. Pairs
    with tied labels are ignored. With binary labels this is the ROC AUC of the
    ranking (share of (positive, negative) pairs ordered correctly).

    Returns:
        A value in [0, 1], or ``nan`` if no pair has different labels
        (e.g. no positive, or all candidates equally relevant).
    """
    return _auc_unchecked(_as_labels(ranked_labels))


# --------------------------------------------------------------------------- #
# many lists
# --------------------------------------------------------------------------- #
def metric_keys(
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
) -> list[str]:
    """Metric names, in output order: ``R@k`` ..., ``N@k`` ..., ``MRR``, ``AUC``."""
    return (
        [f"R@{k}" for k in recall_ks] + [f"N@{k}" for k in ndcg_ks] + ["MRR", "AUC"]
    )


def _fill_list_metrics(
    ranked: npt.NDArray[np.float64],
    r_ks: Sequence[int],
    n_ks: Sequence[int],
    out: dict[str, npt.NDArray[np.float64]],
    i: int,
) -> None:
    """All metrics of one validated ranked list in one pass (same formulas as
    :func:`recall_at_k`, :func:`ndcg_at_k`, :func:`mrr`, :func:`pairwise_auc`);
    writes ``out[key][i]``. Entries stay ``nan`` where undefined."""
    n = ranked.shape[0]
    rel = ranked > 0
    n_rel = int(np.count_nonzero(rel))
    if n_rel:
        hits = np.cumsum(rel)
        for k in r_ks:
            out[f"R@{k}"][i] = hits[min(k, n) - 1] / n_rel
        disc = _discounts(n)
        gains = np.exp2(ranked) - 1.0
        dcg = np.cumsum(gains * disc)
        idcg = np.cumsum(np.sort(gains)[::-1] * disc)
        for k in n_ks:
            m = min(k, n) - 1
            out[f"N@{k}"][i] = dcg[m] / idcg[m]
        out["MRR"][i] = 1.0 / (int(np.argmax(rel)) + 1)
        out["AUC"][i] = _auc_unchecked(ranked)


def per_list_metrics(
    orders: Sequence[OrderLike],
    labels: Sequence[LabelsLike],
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
) -> dict[str, npt.NDArray[np.float64]]:
    """Per-list metric values.

    Args:
        orders: one permutation per list (candidate indices, best first).
        labels: one label vector per list, indexed by candidate index.
            Lists may have different lengths.
        recall_ks: cutoffs for ``R@k``.
        ndcg_ks: cutoffs for ``N@k``.

    Returns:
        ``{"R@k": ..., "N@k": ..., "MRR": ..., "AUC": ...}``, each a float64
        array of length ``len(orders)`` (``nan`` where undefined, see module
        docstring).

    Raises:
        ValueError: if ``orders`` and ``labels`` differ in length, or any order
            is not a permutation of its list's candidate indices.
    """
    if len(orders) != len(labels):
        raise ValueError(
            f"orders and labels must have the same length, got {len(orders)} "
            f"and {len(labels)}"
        )
    r_ks = [_check_k(k) for k in recall_ks]
    n_ks = [_check_k(k) for k in ndcg_ks]
    keys = metric_keys(r_ks, n_ks)
    n = len(orders)
    out = {key: np.full(n, np.nan, dtype=np.float64) for key in keys}
    for i, (order, lab) in enumerate(zip(orders, labels)):
        try:
            ranked = labels_in_order(order, lab)
        except ValueError as exc:
            raise ValueError(f"list {i}: {exc}") from exc
        _fill_list_metrics(ranked, r_ks, n_ks, out, i)
    return out


def evaluate_rankings(
    orders: Sequence[OrderLike],
    labels: Sequence[LabelsLike],
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
) -> dict[str, float]:
    """Mean of each metric over lists, skipping ``nan`` values per metric.

    ``mean_M = sum_{i : M_i not nan} M_i / |{i : M_i not nan}|`` (``nan`` if no
    list has a defined value). Also returns ``"n"``: the number of lists.

    See :func:`per_list_metrics` for the arguments.
    """
    per = per_list_metrics(orders, labels, recall_ks, ndcg_ks)
    res: dict[str, float] = {}
    for key, vals in per.items():
        ok = ~np.isnan(vals)
        res[key] = float(vals[ok].mean()) if ok.any() else math.nan
    res["n"] = float(len(orders))
    return res


def target_rank_metrics(ranks: Sequence[int] | npt.NDArray[np.integer[Any]], ks: Sequence[int]) -> dict[str, float]:
    """Full-catalogue retrieval with one target per example: ``ranks[i]`` is the 1-based rank at which
    example i's target was returned, ``0`` when it was not returned. ``R@k`` = share of examples with
    ``0 < rank <= k``; ``N@k`` = mean of ``1 / log2(rank + 1)`` over them, a miss scoring 0 (one relevant
    item: the ideal DCG is 1, so this is :func:`ndcg_at_k` of each example's binary labels). Both are
    ``nan`` without examples (undefined, as everywhere in this module)."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        inside = (r > 0) & (r <= _check_k(k))
        out[f"R@{k}"] = float(inside.mean()) if len(r) else math.nan
        out[f"N@{k}"] = float(np.where(inside, 1.0 / np.log2(np.maximum(r, 1.0) + 1.0), 0.0).mean()) if len(r) else math.nan
    return out
