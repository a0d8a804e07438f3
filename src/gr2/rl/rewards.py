"""Reward functions for the RL stage (DAPO) of the GR2 re-ranker — pure functions (stdlib, numpy, gr2.metrics).

Sources are tagged like ``docs/method.md``: **[P]** the GR2 paper / technical report,
**[DAPO]** DAPO (arXiv 2503.14476), **[D]** our own decision.

Representation (shared by every function)
-----------------------------------------
* ``K`` candidates. Pre-rank index ``i`` (0-based) is the candidate the pre-ranker put at
  position ``i + 1``; the pre-rank (input) order is therefore the identity ``[0, 1, ..., K-1]``.
* ``order`` is the model's output already mapped to pre-rank index space: a permutation of
  ``0..K-1``, best first. ``None`` means the parser could not produce a valid permutation
  (any duplicate, missing or foreign item). Partial parses get **no** ranking credit [P].
  Defensive [D]: a reward function that receives a non-``None`` ``order`` that is not a
  permutation of ``0..K-1`` (``K = len(labels)``) treats it exactly like ``None``.
* ``labels[i]`` is the graded label of pre-rank candidate ``i``: 0 none, 1 click / the target,
  2 click + conversion (any finite number ``>= 0`` is accepted).
* ``reasoning_ok`` says the output had a non-empty reasoning part in the required format; for the
  reasoning-free output variant (technical report's "reasoning internalisation") pass ``True``.
* Ranks are 1-based.

Rewards and their ranges (``K >= 1``, ``alpha >= 0``)
----------------------------------------------------
* ``naive``:       ``R_rank + α R_fmt``                        valid range ``[-(K-1)/K, (K-1)/K + α]``
* ``conditional``: ``R_rank + α R_fmt`` if gated, else ``R_rank`` valid range ``[-(K-1)/K, (K-1)/K + α]``
* ``auc``:         ``G_auc + α R_fmt`` if gated, else ``G_auc``   valid range ``[-(K-1)/K, (K-1)/K + α]``
* ``ndcg``:        ``G_ndcg + α R_fmt`` if gated, else ``G_ndcg`` valid range
  ``[1/log2(K+1) - 1, 1 - 1/log2(K+1) + α]``

"gated" = the ranking gain is ``> 0``, or the input was already perfect and the output stays
perfect (single positive: the target was first and stays first).

An invalid output earns ``invalid`` (default ``-1`` [D]), which is strictly below every valid
reward of every function as long as ``invalid < -(K-1)/K`` (true for the default, any ``K``).

Multi-positive credit — our choice [D]
--------------------------------------
The technical report [P] only states: ranking credit only for a valid permutation, and the
identity permutation on a not-already-perfect input earns at most ``α R_fmt``. A reward of the
form ``metric(new) + α R_fmt`` with a special case for the exact identity is still hackable by
near-copies (swap two negatives at the bottom and collect ``metric(input)``). We therefore reward
the **gain over the input order** (like REARANK) and gate the format bonus exactly like the
paper's conditional reward:

* ``G = metric(new) - metric(input)`` (for AUC additionally scaled by ``(K-1)/K``, see
  :func:`auc_reward`), where the input order is the identity;
* ``R = G + α R_fmt`` if ``G > 0`` or (the input is perfect *and* the output is perfect), else
  ``R = G``. "Perfect" = labels non-increasing along the order (ties in any order).

Consequences (all proven by ``tests/rl/test_rewards.py``):

* copying the input order gives ``G = 0``: on a non-perfect input it earns exactly ``0`` (``<= α``,
  the report's bound), the same as the conditional reward's ``R_rank = 0``, and strictly less
  than any order that improves the metric; on a perfect input it earns ``α R_fmt``, the maximum
  any valid order can get on that list ("full credit");
* the reward is strictly monotone in the metric of the new order (for fixed ``reasoning_ok``);
* with exactly one positive, :func:`auc_reward` equals :func:`conditional_reward` for every order
  (AUC gain ``× (K-1)/K`` *is* the rank promotion).

A list whose labels are all equal (e.g. no positive) has no discriminating pair: every order is
perfect, so ``G = 0`` and a valid output earns ``α R_fmt`` [D]. Such groups have zero reward
variance and are dropped by DAPO's dynamic sampling anyway.

The metrics are the evaluation's own (:mod:`gr2.metrics.ranking`: one NDCG, one AUC). There an
undefined metric (NDCG of a list without a positive, AUC of a list without two different labels) is
``nan``; here it reads as ``1.0`` — every order is perfect — which gives the rule above.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any, Protocol, Union

import numpy as np
import numpy.typing as npt

from gr2.metrics.ranking import ndcg_at_k, pairwise_auc, pairwise_auc_counts

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_INVALID",
    "LabelsLike",
    "OrderLike",
    "REWARDS",
    "RewardFn",
    "as_permutation",
    "auc_reward",
    "conditional_reward",
    "format_reward",
    "identity_copy",
    "is_valid_order",
    "naive_reward",
    "ndcg_of_order",
    "ndcg_reward",
    "pairwise_auc_of_order",
    "rank_promotion",
    "single_target",
    "soft_overlong_penalty",
]

#: Weight of the format reward, α = 0.2 [P].
DEFAULT_ALPHA: float = 0.2
#: Reward of an output that does not parse into a valid permutation [D].
DEFAULT_INVALID: float = -1.0

#: A 1-D sequence of candidate indices in pre-rank index space.
OrderLike = Union[Sequence[int], npt.NDArray[np.integer[Any]]]
#: A 1-D sequence of graded labels (finite, >= 0), indexed by pre-rank position.
LabelsLike = Union[Sequence[float], npt.NDArray[Any]]

# Gains smaller than this (in absolute value) are treated as exactly 0 (floating-point noise in
# NDCG differences) [D].
_GAIN_EPS: float = 1e-12


class RewardFn(Protocol):
    """Signature shared by every entry of :data:`REWARDS`."""

    def __call__(
        self,
        order: OrderLike | None,
        labels: LabelsLike,
        alpha: float = ...,
        reasoning_ok: bool = ...,
        invalid: float = ...,
    ) -> float: ...


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def as_permutation(order: OrderLike | None, k: int | None = None) -> list[int] | None:
    """Return ``order`` as a list of Python ints if it is a permutation of ``0..k-1``, else ``None``.

    ``k`` defaults to ``len(order)``. Elements must be integers (``bool`` is rejected); a
    duplicate, missing or foreign item, a wrong length or an empty order gives ``None``.
    """
    if order is None:
        return None
    try:
        items = [_as_int(x) for x in order]
    except TypeError:
        return None
    n = len(items) if k is None else k
    if n < 1 or len(items) != n:
        return None
    if sorted(items) != list(range(n)):
        return None
    return items


def is_valid_order(order: OrderLike | None, k: int | None = None) -> bool:
    """``True`` iff ``order`` is a permutation of ``0..k-1`` (``k`` defaults to ``len(order)``)."""
    return as_permutation(order, k) is not None


def _as_int(x: Any) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise TypeError("bool is not a candidate index")
    return operator.index(x)


def _as_labels(labels: LabelsLike) -> list[float]:
    """Validate (non-empty, 1-D, finite, >= 0) and return the labels as Python floats."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D sequence, got shape {labels.shape}")
        items: list[Any] = labels.tolist()
    else:
        items = list(labels)
    out: list[float] = []
    for x in items:
        if not isinstance(x, numbers.Real):
            raise ValueError(f"labels must be real numbers, got {x!r}")
        v = float(x)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"labels must be finite and >= 0, got {x!r}")
        out.append(v)
    if not out:
        raise ValueError("labels must be non-empty")
    return out


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
    return a


def _check_invalid(invalid: float) -> float:
    v = float(invalid)
    if not math.isfinite(v):
        raise ValueError(f"invalid must be finite, got {invalid!r}")
    return v


def _is_perfect(seq: Sequence[float]) -> bool:
    """Labels non-increasing along ``seq`` (ties in any order)."""
    return all(seq[i] >= seq[i + 1] for i in range(len(seq) - 1))


def single_target(labels: LabelsLike) -> int:
    """The pre-rank index of the only positive (label > 0).

    Raises ``ValueError`` unless exactly one label is positive: for slates with several
    positives use the multi-positive rewards (:func:`auc_reward`, :func:`ndcg_reward`).
    """
    return _single_target(_as_labels(labels))


def _single_target(labs: list[float]) -> int:
    positives = [i for i, g in enumerate(labs) if g > 0]
    if len(positives) != 1:
        raise ValueError(
            f"single-positive reward needs exactly one label > 0, got {len(positives)} "
            f"(labels={labs}); use the multi-positive rewards 'auc' or 'ndcg' instead"
        )
    return positives[0]


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #
def rank_promotion(order: OrderLike, target_index: int, k: int | None = None) -> float:
    """Rank promotion of the target [P]: ``R_rank = (rank_pre - rank_new) / K``.

    ``rank_pre = target_index + 1`` (the input order is the identity); ``rank_new`` = 1-based
    position of ``target_index`` in ``order``. ``K`` defaults to ``len(order)``; passing ``k``
    checks that ``order`` has that length. Range ``[-(K-1)/K, (K-1)/K]``.

    Raises ``ValueError`` if ``order`` is not a valid permutation (the reward functions handle
    invalid outputs before calling this) or ``target_index`` is out of range.
    """
    perm = as_permutation(order, k)
    if perm is None:
        raise ValueError(f"order must be a permutation of 0..K-1, got {order!r} (k={k})")
    n = len(perm)
    t = _as_int(target_index)
    if not 0 <= t < n:
        raise ValueError(f"target_index {target_index} out of range for K={n}")
    return _rank_promotion(perm, t)


def _rank_promotion(perm: list[int], t: int) -> float:
    rank_pre = t + 1
    rank_new = perm.index(t) + 1
    return (rank_pre - rank_new) / len(perm)


def format_reward(order: OrderLike | None, reasoning_ok: bool, *, k: int | None = None) -> float:
    """Format reward [P]: ``R_fmt = 1`` if the output parsed into reasoning + a valid permutation, else 0.

    ``reasoning_ok`` carries the "reasoning present and well-formed" part (pass ``True`` for the
    reasoning-free variant); ``k`` (optional) additionally checks the permutation's length.
    """
    return 1.0 if (bool(reasoning_ok) and as_permutation(order, k) is not None) else 0.0


def _perfect_if_undefined(value: float) -> float:
    """A metric of :mod:`gr2.metrics.ranking` as the rewards read it: ``nan`` (undefined on this
    list) is ``1.0``, every order being perfect [D]."""
    return 1.0 if math.isnan(value) else value


def _ranked(order: OrderLike, labels: LabelsLike) -> npt.NDArray[np.float64]:
    """The labels in the order of ``order`` (``ValueError`` if it is not a permutation)."""
    labs = _as_labels(labels)
    perm = as_permutation(order, len(labs))
    if perm is None:
        raise ValueError(f"order must be a permutation of 0..{len(labs) - 1}, got {order!r}")
    return np.asarray(labs)[perm]


def _ndcg(ranked: npt.NDArray[np.float64]) -> float:
    """NDCG@K of a whole ranked list, ``1.0`` where undefined (no positive)."""
    return _perfect_if_undefined(ndcg_at_k(ranked, ranked.shape[0]))


def pairwise_auc_of_order(order: OrderLike, labels: LabelsLike) -> float:
    """Pairwise AUC of ``order`` [P, graded pairs D] — :func:`gr2.metrics.ranking.pairwise_auc`.

    ``AUC = #{(i, j): label_i > label_j, i ranked before j} / #{(i, j): label_i > label_j}`` —
    every pair of candidates with different labels counts (so 2 vs 1 pairs too, not only
    positive vs negative). ``1.0`` when no pair has different labels (every order is perfect).
    """
    return _perfect_if_undefined(pairwise_auc(_ranked(order, labels)))


def ndcg_of_order(order: OrderLike, labels: LabelsLike) -> float:
    """Graded NDCG@K of ``order`` [P] — :func:`gr2.metrics.ranking.ndcg_at_k` with ``k = K``:
    ``DCG / IDCG`` with ``DCG = Σ_p (2^g_p - 1) / log2(p + 1)``.

    ``p`` is the 1-based rank, ``K = len(labels)`` (the whole list), ``IDCG`` = DCG of the labels
    sorted descending. ``1.0`` when all labels are 0 (every order is perfect) [D].
    Range ``[1/log2(K+1), 1]`` otherwise.
    """
    return _ndcg(_ranked(order, labels))


# --------------------------------------------------------------------------- #
# rewards
# --------------------------------------------------------------------------- #
def naive_reward(
    order: OrderLike | None,
    labels: LabelsLike,
    alpha: float = DEFAULT_ALPHA,
    reasoning_ok: bool = True,
    invalid: float = DEFAULT_INVALID,
) -> float:
    """Naive reward [P]: ``R = R_rank + α R_fmt``; invalid output → ``invalid`` [D].

    Kept **only for the ablation**: it is hackable — copying the input order gives
    ``R_rank = 0`` but still collects ``α`` (with ``α > 0``) for nothing [P].
    Single positive only (``ValueError`` otherwise). Valid range ``[-(K-1)/K, (K-1)/K + α]``.
    """
    a = _check_alpha(alpha)
    bad = _check_invalid(invalid)
    labs = _as_labels(labels)
    target = _single_target(labs)
    perm = as_permutation(order, len(labs))
    if perm is None:
        return bad
    return _rank_promotion(perm, target) + a * (1.0 if reasoning_ok else 0.0)


def conditional_reward(
    order: OrderLike | None,
    labels: LabelsLike,
    alpha: float = DEFAULT_ALPHA,
    reasoning_ok: bool = True,
    invalid: float = DEFAULT_INVALID,
) -> float:
    """The paper's conditional reward [P], single positive.

    ``R = R_rank + α R_fmt`` if ``R_rank > 0`` or (the target was already first and stays first),
    else ``R = R_rank`` [P; the "stays first" clause D]. ``R_rank`` = :func:`rank_promotion`,
    ``R_fmt`` = :func:`format_reward`, ``α = 0.2`` [P]. Invalid output → ``invalid`` (``-1``) [D].

    So copying the input order earns exactly ``R_rank = 0`` unless the target was first
    (then ``α R_fmt``, the best possible on that list). A valid order without reasoning earns
    ``R_rank`` (ranking credit, no format credit). Valid range ``[-(K-1)/K, (K-1)/K + α]``.

    Raises ``ValueError`` unless ``labels`` has exactly one positive (use ``auc``/``ndcg``).
    """
    a = _check_alpha(alpha)
    bad = _check_invalid(invalid)
    labs = _as_labels(labels)
    target = _single_target(labs)
    perm = as_permutation(order, len(labs))
    if perm is None:
        return bad
    r_rank = _rank_promotion(perm, target)
    kept_first = target == 0 and perm[0] == 0
    if r_rank > 0 or kept_first:
        return r_rank + a * (1.0 if reasoning_ok else 0.0)
    return r_rank


def _gated(gain: float, input_perfect: bool, output_perfect: bool, a: float, r_fmt: float) -> float:
    """``G + α R_fmt`` if ``G > 0`` or (input perfect and output perfect), else ``G`` [D, mirrors P]."""
    if gain > 0 or (input_perfect and output_perfect):
        return gain + a * r_fmt
    return gain


def auc_reward(
    order: OrderLike | None,
    labels: LabelsLike,
    alpha: float = DEFAULT_ALPHA,
    reasoning_ok: bool = True,
    invalid: float = DEFAULT_INVALID,
) -> float:
    """Multi-positive AUC reward (technical report [P]; gain + gating [D]).

    ``G_auc = (AUC(order) - AUC(identity)) · (K-1)/K`` with AUC = :func:`pairwise_auc_of_order`;
    ``R = G_auc + α R_fmt`` if ``G_auc > 0`` or (input perfect and output perfect), else
    ``R = G_auc``; invalid output → ``invalid`` (``-1``).

    The ``(K-1)/K`` factor [D] puts the reward on the scale of ``R_rank``: with a single positive
    ``AUC = (K - rank)/(K - 1)``, so ``G_auc = (rank_pre - rank_new)/K = R_rank`` and this reward
    equals :func:`conditional_reward` exactly. It also keeps valid rewards in
    ``[-(K-1)/K, (K-1)/K + α]``, strictly above ``invalid = -1`` (an unscaled AUC gain reaches
    ``-1`` when a perfect input is fully reversed). The gain is computed from the integer pair
    counts behind the AUC (:func:`gr2.metrics.ranking.pairwise_auc_counts`), so "``G > 0``" is exact.
    """
    a = _check_alpha(alpha)
    bad = _check_invalid(invalid)
    labs = _as_labels(labels)
    n = len(labs)
    perm = as_permutation(order, n)
    if perm is None:
        return bad
    new_seq = [labs[i] for i in perm]
    correct_new, total = pairwise_auc_counts(new_seq)
    correct_in, _ = pairwise_auc_counts(labs)
    gain = 0.0 if total == 0 else (correct_new - correct_in) * (n - 1) / (total * n)
    return _gated(gain, _is_perfect(labs), _is_perfect(new_seq), a, 1.0 if reasoning_ok else 0.0)


def ndcg_reward(
    order: OrderLike | None,
    labels: LabelsLike,
    alpha: float = DEFAULT_ALPHA,
    reasoning_ok: bool = True,
    invalid: float = DEFAULT_INVALID,
) -> float:
    """Multi-positive graded NDCG reward (technical report [P]; gain + gating [D]).

    ``G_ndcg = NDCG@K(order) - NDCG@K(identity)`` with NDCG = :func:`ndcg_of_order`
    (gain ``2^g - 1``, discount ``1/log2(rank + 1)``, ideal-normalised); ``|G| < 1e-12`` is
    treated as 0 [D]. ``R = G_ndcg + α R_fmt`` if ``G_ndcg > 0`` or (input perfect and output
    perfect), else ``R = G_ndcg``; invalid output → ``invalid`` (``-1``).

    Not rescaled [D]: since ``NDCG >= 1/log2(K+1)`` whenever a label is positive, valid rewards
    lie in ``[1/log2(K+1) - 1, 1 - 1/log2(K+1) + α]``, strictly above ``-1``. Unlike AUC it does
    not reduce to ``R_rank`` for a single positive (the gain is log-discounted).
    """
    a = _check_alpha(alpha)
    bad = _check_invalid(invalid)
    labs = _as_labels(labels)
    perm = as_permutation(order, len(labs))
    if perm is None:
        return bad
    new_seq = [labs[i] for i in perm]
    gain = _ndcg(np.asarray(new_seq)) - _ndcg(np.asarray(labs))  # 0 where undefined (no positive)
    if abs(gain) < _GAIN_EPS:
        gain = 0.0
    return _gated(gain, _is_perfect(labs), _is_perfect(new_seq), a, 1.0 if reasoning_ok else 0.0)


# --------------------------------------------------------------------------- #
# length shaping and logging helpers
# --------------------------------------------------------------------------- #
def soft_overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    """DAPO's soft overlong punishment [DAPO], added to the task reward.

    With ``L_max = max_len``, ``L_c = cache_len``, ``|y| = length``::

        0                              if |y| <= L_max - L_c
        ((L_max - L_c) - |y|) / L_c    if L_max - L_c < |y| <= L_max
        -1                             if |y| > L_max

    Continuous (0 at ``L_max - L_c``, -1 at ``L_max``), range ``[-1, 0]``. ``cache_len = 0``
    degenerates to a hard step (0 up to ``L_max``, -1 beyond) [D].
    Requires ``length >= 0`` and ``0 <= cache_len <= max_len``.
    """
    n, lmax, lc = _as_int(length), _as_int(max_len), _as_int(cache_len)
    if n < 0 or lmax < 0 or not 0 <= lc <= lmax:
        raise ValueError(
            f"need length >= 0 and 0 <= cache_len <= max_len, got {length=}, {max_len=}, {cache_len=}"
        )
    if n > lmax:
        return -1.0
    start = lmax - lc
    if n <= start:
        return 0.0
    return (start - n) / lc


def identity_copy(order: OrderLike | None, shown: OrderLike | None = None) -> bool:
    """``True`` iff ``order`` copies the presented order — for the identity-copy rate log [P].

    ``shown`` is the order the candidates were presented in, in pre-rank index space; default
    the pre-rank order ``[0..K-1]`` (``order == list(range(K))``). When candidates are shown
    shuffled (the position-bias counter, docs/method.md §7) pass the shuffle to detect copying of
    the displayed order. ``None``/invalid outputs are never copies.
    """
    perm = as_permutation(order)
    if perm is None:
        return False
    if shown is None:
        return perm == list(range(len(perm)))
    ref = as_permutation(shown)
    return ref is not None and perm == ref


#: Reward registry by config name.
REWARDS: dict[str, RewardFn] = {
    "conditional": conditional_reward,
    "naive": naive_reward,
    "auc": auc_reward,
    "ndcg": ndcg_reward,
}
