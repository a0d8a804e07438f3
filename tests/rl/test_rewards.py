"""Tests for gr2.rl.rewards: hand-computed values, the reward hacks, exhaustive small-K sweeps and
hypothesis properties. Representation: ``order`` is in pre-rank index space, the input order is the
identity, ``None`` = unparseable output."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr2.rl import REWARDS
from gr2.rl.rewards import (
    DEFAULT_ALPHA,
    DEFAULT_INVALID,
    as_permutation,
    auc_reward,
    conditional_reward,
    format_reward,
    identity_copy,
    is_valid_order,
    naive_reward,
    ndcg_of_order,
    ndcg_reward,
    pairwise_auc_of_order,
    rank_promotion,
    single_target,
    soft_overlong_penalty,
)

K = 10
ALPHA = DEFAULT_ALPHA
IDENTITY = list(range(K))
SINGLE_REWARDS = {"conditional": conditional_reward, "naive": naive_reward}
MULTI_REWARDS = {"auc": auc_reward, "ndcg": ndcg_reward}
ANTI_HACK_REWARDS = {"conditional": conditional_reward, "auc": auc_reward, "ndcg": ndcg_reward}
HYP = settings(max_examples=120, deadline=None)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def one_hot(t: int, k: int = K) -> list[int]:
    return [1 if i == t else 0 for i in range(k)]


def order_with(target: int, pos: int, rng: random.Random, k: int = K) -> list[int]:
    """A random permutation of 0..k-1 with ``target`` at 0-based position ``pos``."""
    rest = [i for i in range(k) if i != target]
    rng.shuffle(rest)
    return rest[:pos] + [target] + rest[pos:]


def orders_with(target: int, pos: int, n: int = 12, seed: int = 0, k: int = K) -> list[list[int]]:
    rng = random.Random(seed * 1000 + target * 37 + pos)
    out = [order_with(target, pos, rng, k) for _ in range(n)]
    # also the "minimal" move: identity with the target moved to ``pos``
    rest = [i for i in range(k) if i != target]
    out.append(rest[:pos] + [target] + rest[pos:])
    return out


def random_orders(n: int, seed: int, k: int = K) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = list(range(k))
        rng.shuffle(p)
        out.append(p)
    return out


def is_perfect(labels, order) -> bool:
    seq = [labels[i] for i in order]
    return all(seq[i] >= seq[i + 1] for i in range(len(seq) - 1))


def auc_correct_pairs(labels, order) -> int:
    seq = [labels[i] for i in order]
    return sum(1 for a in range(len(seq)) for b in range(a + 1, len(seq)) if seq[a] > seq[b])


def valid_bounds(name: str, k: int, alpha: float) -> tuple[float, float]:
    """The documented range of valid rewards."""
    if name == "ndcg":
        m = 1.0 / math.log2(k + 1)
        return m - 1.0, 1.0 - m + alpha
    return -(k - 1) / k, (k - 1) / k + alpha


MALFORMED = [
    [0, 0, 1, 2, 3, 4, 5, 6, 7, 8],  # duplicate
    [0, 1, 2, 3, 4, 5, 6, 7, 8],  # missing (short)
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 10],  # foreign
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9],  # too long
    [0, 1, 2, 3, 4, 5, 6, 7, 8, -1],  # negative
    [],  # empty
    [0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9],  # float item
    ["0", 1, 2, 3, 4, 5, 6, 7, 8, 9],  # string item
    [True, False, 2, 3, 4, 5, 6, 7, 8, 9],  # bools
]


# --------------------------------------------------------------------------- #
# package hygiene, registry
# --------------------------------------------------------------------------- #
def test_import_is_light() -> None:
    code = "import sys, gr2.rl, gr2.rl.rewards; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_names_and_signature() -> None:
    assert set(REWARDS) == {"conditional", "naive", "auc", "ndcg"}
    labels = one_hot(3)
    for name, fn in REWARDS.items():
        assert callable(fn)
        r = fn([3, 0, 1, 2, 4, 5, 6, 7, 8, 9], labels, alpha=0.5, reasoning_ok=False, invalid=-2.0)
        assert math.isfinite(r)
        assert fn(None, labels, alpha=0.5, reasoning_ok=True, invalid=-2.0) == -2.0, name
    assert REWARDS["conditional"] is conditional_reward
    assert REWARDS["naive"] is naive_reward
    assert REWARDS["auc"] is auc_reward
    assert REWARDS["ndcg"] is ndcg_reward
    assert DEFAULT_ALPHA == 0.2 and DEFAULT_INVALID == -1.0


# --------------------------------------------------------------------------- #
# validity helpers, rank promotion, format reward
# --------------------------------------------------------------------------- #
def test_valid_order_accepts_sequences_and_numpy() -> None:
    assert is_valid_order(IDENTITY)
    assert is_valid_order(tuple(reversed(IDENTITY)))
    assert is_valid_order(np.arange(K)[::-1])
    assert is_valid_order(np.arange(K, dtype=np.int32), K)
    assert as_permutation(np.array([2, 0, 1], dtype=np.int64)) == [2, 0, 1]
    assert all(type(x) is int for x in as_permutation(np.array([1, 0])) or [])
    assert not is_valid_order(IDENTITY, K + 1)
    assert not is_valid_order(None)


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_orders_are_invalid(bad) -> None:
    assert not is_valid_order(bad, K)
    assert format_reward(bad, True, k=K) == 0.0
    with pytest.raises(ValueError):
        rank_promotion(bad, 0, k=K)


@pytest.mark.parametrize("target", range(K))
@pytest.mark.parametrize("pos", range(K))
def test_rank_promotion_every_move(target: int, pos: int) -> None:
    expected = ((target + 1) - (pos + 1)) / K
    for order in orders_with(target, pos, n=3):
        assert rank_promotion(order, target) == pytest.approx(expected)
        assert rank_promotion(order, target, k=K) == pytest.approx(expected)


def test_rank_promotion_hand_values() -> None:
    # target at pre-rank position 5 (index 4) moved to position 1
    assert rank_promotion([4, 0, 1, 2, 3, 5, 6, 7, 8, 9], 4) == pytest.approx(0.4)
    # last to first, first to last
    assert rank_promotion([9, 0, 1, 2, 3, 4, 5, 6, 7, 8], 9) == pytest.approx(0.9)
    assert rank_promotion([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], 0) == pytest.approx(-0.9)
    assert rank_promotion(IDENTITY, 6) == 0.0
    # the normaliser is K
    assert rank_promotion([1, 0, 2], 1) == pytest.approx(1 / 3)


def test_rank_promotion_errors() -> None:
    with pytest.raises(ValueError):
        rank_promotion(IDENTITY, K)
    with pytest.raises(ValueError):
        rank_promotion(IDENTITY, -1)
    with pytest.raises(ValueError):
        rank_promotion(IDENTITY, 0, k=5)  # length mismatch
    with pytest.raises(ValueError):
        rank_promotion(None, 0)  # type: ignore[arg-type]


def test_format_reward() -> None:
    assert format_reward(IDENTITY, True) == 1.0
    assert format_reward([3, 1, 2, 0], True) == 1.0
    assert format_reward(IDENTITY, False) == 0.0
    assert format_reward(None, True) == 0.0
    assert format_reward(None, False) == 0.0
    assert format_reward(IDENTITY, True, k=K) == 1.0
    assert format_reward(IDENTITY, True, k=K - 1) == 0.0


def test_single_target() -> None:
    assert single_target(one_hot(7)) == 7
    assert single_target([0, 0, 2]) == 2
    for bad in ([0] * K, [1, 1] + [0] * (K - 2), [2, 0, 1]):
        with pytest.raises(ValueError, match="auc"):
            single_target(bad)


@pytest.mark.parametrize("fn", [conditional_reward, naive_reward])
def test_single_positive_rewards_reject_multi_positive(fn) -> None:
    with pytest.raises(ValueError, match="multi-positive"):
        fn(IDENTITY, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="multi-positive"):
        fn(IDENTITY, [0] * K)
    # the label check happens even for an invalid output (caller bug, not model behaviour)
    with pytest.raises(ValueError):
        fn(None, [0] * K)


@pytest.mark.parametrize("fn", list(REWARDS.values()))
def test_argument_validation(fn) -> None:
    labels = one_hot(2)
    with pytest.raises(ValueError):
        fn(IDENTITY, labels, alpha=-0.1)
    with pytest.raises(ValueError):
        fn(IDENTITY, labels, alpha=float("nan"))
    with pytest.raises(ValueError):
        fn(IDENTITY, labels, invalid=float("nan"))
    with pytest.raises(ValueError):
        fn(IDENTITY, [-1] + labels[1:])
    with pytest.raises(ValueError):
        fn(IDENTITY, [float("nan")] + labels[1:])
    with pytest.raises(ValueError):
        fn(IDENTITY, [labels, labels])
    with pytest.raises(ValueError):
        fn([], [])


# --------------------------------------------------------------------------- #
# hand-computed rewards
# --------------------------------------------------------------------------- #
def test_conditional_hand_values() -> None:
    promote_5_to_1 = [4, 0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert conditional_reward(promote_5_to_1, one_hot(4)) == pytest.approx((5 - 1) / 10 + 0.2)
    assert conditional_reward(promote_5_to_1, one_hot(4), reasoning_ok=False) == pytest.approx(0.4)
    assert conditional_reward(promote_5_to_1, one_hot(4), alpha=0.5) == pytest.approx(0.9)
    # target 10 -> 1
    assert conditional_reward([9] + list(range(9)), one_hot(9)) == pytest.approx(0.9 + 0.2)
    # target first and stays first: alpha only
    assert conditional_reward(IDENTITY, one_hot(0)) == pytest.approx(0.2)
    assert conditional_reward([0, 5, 3, 1, 2, 4, 6, 7, 8, 9], one_hot(0)) == pytest.approx(0.2)
    # target first, demoted to 2: R_rank only
    assert conditional_reward([1, 0, 2, 3, 4, 5, 6, 7, 8, 9], one_hot(0)) == pytest.approx(-0.1)
    # target at 3 demoted to 8
    assert conditional_reward([0, 1, 3, 4, 5, 6, 7, 2, 8, 9], one_hot(2)) == pytest.approx((3 - 8) / 10)
    # graded positive (label 2) works as the single target
    labels = [0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    assert conditional_reward([2, 0, 1, 3, 4, 5, 6, 7, 8, 9], labels) == pytest.approx(0.2 + 0.2)
    # invalid
    assert conditional_reward(None, one_hot(4)) == -1.0
    assert conditional_reward(None, one_hot(4), invalid=-3.0) == -3.0


def test_naive_hand_values() -> None:
    assert naive_reward([4, 0, 1, 2, 3, 5, 6, 7, 8, 9], one_hot(4)) == pytest.approx(0.6)
    assert naive_reward([1, 0, 2, 3, 4, 5, 6, 7, 8, 9], one_hot(0)) == pytest.approx(-0.1 + 0.2)
    assert naive_reward(IDENTITY, one_hot(6)) == pytest.approx(0.2)
    assert naive_reward(IDENTITY, one_hot(6), reasoning_ok=False) == 0.0
    assert naive_reward(None, one_hot(6)) == -1.0


def test_multi_positive_hand_values() -> None:
    # input labels [0, 2, 1, 0]; discriminating pairs: (2>1), (2>0)x2, (1>0)x2 = 5
    labels = [0, 2, 1, 0]
    # input order: correct pairs (2,1),(2,0),(1,0) = 3  -> AUC 3/5
    assert pairwise_auc_of_order([0, 1, 2, 3], labels) == pytest.approx(3 / 5)
    perfect = [1, 2, 0, 3]
    assert pairwise_auc_of_order(perfect, labels) == 1.0
    # gain (5 - 3)/5 * (K-1)/K with K = 4 -> 0.3; + alpha
    assert auc_reward(perfect, labels) == pytest.approx(0.3 + 0.2)
    assert auc_reward(perfect, labels, reasoning_ok=False) == pytest.approx(0.3)
    # NDCG: gains 2^g - 1 = [0, 3, 1, 0]
    dcg_in = 3 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_of_order([0, 1, 2, 3], labels) == pytest.approx(dcg_in / idcg)
    assert ndcg_of_order(perfect, labels) == pytest.approx(1.0)
    assert ndcg_reward(perfect, labels) == pytest.approx(1 - dcg_in / idcg + 0.2)
    # a worse order: [0, 3, 2, 1] -> labels [0, 0, 1, 2]
    worse = [0, 3, 2, 1]
    dcg_w = 1 / math.log2(4) + 3 / math.log2(5)
    assert ndcg_reward(worse, labels) == pytest.approx((dcg_w - dcg_in) / idcg)
    assert auc_reward(worse, labels) == pytest.approx((0 - 3) / 5 * 3 / 4)
    # identity on the non-perfect input: nothing
    assert auc_reward([0, 1, 2, 3], labels) == 0.0
    assert ndcg_reward([0, 1, 2, 3], labels) == 0.0
    # invalid
    assert auc_reward(None, labels) == -1.0
    assert ndcg_reward([0, 1, 1, 3], labels) == -1.0


def test_metric_helpers_reject_invalid_orders() -> None:
    with pytest.raises(ValueError):
        pairwise_auc_of_order([0, 0, 1], [1, 0, 0])
    with pytest.raises(ValueError):
        ndcg_of_order([0, 1], [1, 0, 0])


@pytest.mark.parametrize("fn", list(MULTI_REWARDS.values()))
def test_all_equal_labels_are_degenerate(fn) -> None:
    for labels in ([0] * K, [1] * K, [2] * 4):
        k = len(labels)
        for order in random_orders(10, seed=k, k=k) + [list(range(k))]:
            assert fn(order, labels) == pytest.approx(ALPHA)
            assert fn(order, labels, reasoning_ok=False) == 0.0
        assert fn(None, labels) == -1.0
    assert pairwise_auc_of_order(IDENTITY, [0] * K) == 1.0
    assert ndcg_of_order(IDENTITY, [0] * K) == 1.0


def test_k_equals_one() -> None:
    for fn in REWARDS.values():
        assert fn([0], [1]) == pytest.approx(ALPHA)
        assert fn(None, [1]) == -1.0
    assert rank_promotion([0], 0) == 0.0


# --------------------------------------------------------------------------- #
# the copy-the-input hack
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("target", range(K))
def test_identity_copy_earns_nothing_unless_target_first(target: int) -> None:
    labels = one_hot(target)
    for alpha in (0.0, 0.2, 0.5, 1.0):
        expected = alpha if target == 0 else 0.0
        assert conditional_reward(IDENTITY, labels, alpha=alpha) == pytest.approx(expected)
        # no alpha at all when the target was not first: exactly R_rank = 0
        if target > 0:
            assert conditional_reward(IDENTITY, labels, alpha=alpha) == 0.0
        # auc/ndcg with a single positive behave the same on the identity
        assert auc_reward(IDENTITY, labels, alpha=alpha) == pytest.approx(expected)
        assert ndcg_reward(IDENTITY, labels, alpha=alpha) == pytest.approx(expected)


@pytest.mark.parametrize("name", list(ANTI_HACK_REWARDS))
@pytest.mark.parametrize("target", range(K))
def test_copy_never_beats_a_real_improvement(name: str, target: int) -> None:
    fn = ANTI_HACK_REWARDS[name]
    labels = one_hot(target)
    copy = fn(IDENTITY, labels)
    for pos in range(K):
        for order in orders_with(target, pos):
            for ok in (True, False):
                r = fn(order, labels, reasoning_ok=ok)
                if pos < target:  # a real improvement of the target
                    assert r > copy, (order, r, copy)
                    assert r > fn(IDENTITY, labels, reasoning_ok=ok)
                elif pos == target:  # same rank as the copy: never more than the copy
                    assert r == pytest.approx(fn(IDENTITY, labels, reasoning_ok=ok))
                    assert r <= copy
                else:  # demotion: strictly less than the copy
                    assert r < copy
    if target == 0:  # target already first: copying is the best possible
        for order in random_orders(200, seed=target):
            assert fn(order, labels) <= copy


@pytest.mark.parametrize("target", range(1, K))
def test_naive_reward_is_hackable(target: int) -> None:
    """Why naive is only for the ablation: copying collects alpha for nothing."""
    labels = one_hot(target)
    assert naive_reward(IDENTITY, labels) == pytest.approx(ALPHA)
    assert naive_reward(IDENTITY, labels) > 0.0
    assert conditional_reward(IDENTITY, labels) == 0.0
    # copying beats a real one-step improvement whenever alpha > 1/K
    one_up = IDENTITY.copy()
    one_up[target - 1], one_up[target] = one_up[target], one_up[target - 1]
    assert naive_reward(IDENTITY, labels, alpha=0.2) == pytest.approx(0.2)
    assert naive_reward(one_up, labels, alpha=0.2) == pytest.approx(0.1 + 0.2)
    # with the conditional reward the improvement earns strictly more than copying, whatever alpha
    for alpha in (0.0, 0.2, 1.0):
        assert conditional_reward(one_up, labels, alpha=alpha) > conditional_reward(IDENTITY, labels, alpha=alpha)
    # and a demotion by one still earns a positive naive reward (alpha covers the loss)
    if target < K - 1:
        down = IDENTITY.copy()
        down[target], down[target + 1] = down[target + 1], down[target]
        assert naive_reward(down, labels) == pytest.approx(-0.1 + 0.2)
        assert naive_reward(down, labels) > 0.0
        assert conditional_reward(down, labels) < 0.0


# --------------------------------------------------------------------------- #
# invalid outputs, missing reasoning
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", list(REWARDS))
@pytest.mark.parametrize("target", range(K))
def test_invalid_never_beats_valid(name: str, target: int) -> None:
    fn = REWARDS[name]
    labels = one_hot(target)
    bad = fn(None, labels)
    assert bad == DEFAULT_INVALID
    for pos in range(K):
        for order in orders_with(target, pos, n=4):
            for ok in (True, False):
                assert bad < fn(order, labels, reasoning_ok=ok)
    for malformed in MALFORMED:
        assert fn(malformed, labels) == bad
        assert fn(malformed, labels, reasoning_ok=False) == bad


@pytest.mark.parametrize("name", list(REWARDS))
def test_no_reasoning_no_format_credit(name: str) -> None:
    fn = REWARDS[name]
    label_sets = [one_hot(t) for t in range(K)] if name in SINGLE_REWARDS else [
        one_hot(t) for t in range(K)
    ] + [[2, 0, 1, 0, 1, 0, 0, 2, 0, 0], [0, 0, 0, 1, 1, 1, 2, 2, 0, 0], [2, 1, 1, 0, 0, 0, 0, 0, 0, 0]]
    for labels in label_sets:
        for order in random_orders(30, seed=sum(labels) * 7 + labels.index(max(labels))) + [IDENTITY]:
            without = fn(order, labels, reasoning_ok=False)
            # no format credit: identical to the reward with alpha = 0
            assert without == fn(order, labels, alpha=0.0)
            assert without == fn(order, labels, alpha=0.7, reasoning_ok=False)
            assert fn(order, labels, reasoning_ok=True) >= without


# --------------------------------------------------------------------------- #
# single positive: auc == conditional
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("target", range(K))
def test_auc_reduces_to_conditional_for_single_positive(target: int) -> None:
    labels = one_hot(target)
    for pos in range(K):
        for order in orders_with(target, pos, n=4):
            for ok in (True, False):
                assert auc_reward(order, labels, reasoning_ok=ok) == conditional_reward(
                    order, labels, reasoning_ok=ok
                )


# --------------------------------------------------------------------------- #
# exhaustive sweeps at small K
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_exhaustive_single_positive(k: int) -> None:
    perms = [list(p) for p in itertools.permutations(range(k))]
    ident = list(range(k))
    lo, hi = valid_bounds("conditional", k, ALPHA)
    for t in range(k):
        labels = one_hot(t, k)
        copy = {n: f(ident, labels) for n, f in REWARDS.items()}
        for p in perms:
            rr = rank_promotion(p, t)
            c = conditional_reward(p, labels)
            a = auc_reward(p, labels)
            assert c == a
            assert lo - 1e-12 <= c <= hi + 1e-12
            assert c > DEFAULT_INVALID
            gated = rr > 0 or (t == 0 and p[0] == 0)
            assert c == pytest.approx(rr + (ALPHA if gated else 0.0))
            assert naive_reward(p, labels) == pytest.approx(rr + ALPHA)
            improves = p.index(t) < t
            for n in ANTI_HACK_REWARDS:
                r = REWARDS[n](p, labels)
                if improves:
                    assert r > copy[n]
                else:
                    assert r <= copy[n] + 1e-12


@pytest.mark.parametrize("k", [3, 4, 5])
def test_exhaustive_multi_positive(k: int) -> None:
    perms = [list(p) for p in itertools.permutations(range(k))]
    ident = list(range(k))
    for labels in itertools.product(range(3), repeat=k):
        labels = list(labels)
        input_perfect = is_perfect(labels, ident)
        auc_in = auc_correct_pairs(labels, ident)
        ndcg_in = ndcg_of_order(ident, labels)
        for name, fn in MULTI_REWARDS.items():
            lo, hi = valid_bounds(name, k, ALPHA)
            copy = fn(ident, labels)
            if input_perfect:
                assert copy == pytest.approx(ALPHA)
            else:
                assert copy == 0.0
            rewards = []
            for p in perms:
                r = fn(p, labels)
                rewards.append(r)
                assert math.isfinite(r) and lo - 1e-12 <= r <= hi + 1e-12
                assert r > DEFAULT_INVALID
                if name == "auc":
                    better = auc_correct_pairs(labels, p) > auc_in
                else:
                    better = ndcg_of_order(p, labels) > ndcg_in + 1e-12
                if better:
                    assert r > copy
                    assert r > 0
                else:
                    assert r <= copy + 1e-12
            if input_perfect:  # identity earns the full credit: the maximum over all orders
                assert copy == pytest.approx(max(rewards))


# --------------------------------------------------------------------------- #
# multi-positive properties at K = 10
# --------------------------------------------------------------------------- #
MULTI_LABELS = [
    [0, 1, 0, 0, 2, 0, 0, 1, 0, 0],
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    [2, 2, 1, 0, 0, 0, 0, 0, 1, 0],
    [1, 2, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
    [0, 2, 2, 2, 0, 1, 0, 2, 0, 0],
]
PERFECT_LABELS = [
    [2, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    [2, 2, 2, 1, 1, 1, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
]


@pytest.mark.parametrize("name", list(MULTI_REWARDS))
@pytest.mark.parametrize("labels", MULTI_LABELS)
def test_identity_on_non_perfect_input(name: str, labels: list[int]) -> None:
    fn = MULTI_REWARDS[name]
    metric = pairwise_auc_of_order if name == "auc" else ndcg_of_order
    copy = fn(IDENTITY, labels)
    assert copy == 0.0 <= ALPHA * 1.0
    base = metric(IDENTITY, labels)
    n_better = 0
    for order in random_orders(300, seed=hash(tuple(labels)) % 10_000) + [
        sorted(range(K), key=lambda i: -labels[i])
    ]:
        for ok in (True, False):
            r = fn(order, labels, reasoning_ok=ok)
            if metric(order, labels) > base + 1e-12:
                n_better += 1
                assert r > copy
            else:
                assert r <= copy
    assert n_better > 0


@pytest.mark.parametrize("name", list(MULTI_REWARDS))
@pytest.mark.parametrize("labels", PERFECT_LABELS)
def test_identity_on_perfect_input_earns_full(name: str, labels: list[int]) -> None:
    fn = MULTI_REWARDS[name]
    copy = fn(IDENTITY, labels)
    assert copy == pytest.approx(ALPHA)
    assert fn(IDENTITY, labels, reasoning_ok=False) == 0.0
    for order in random_orders(300, seed=len(labels) + sum(labels)):
        r = fn(order, labels)
        assert r <= copy
        if is_perfect(labels, order):  # other perfect orders (ties swapped) earn the same
            assert r == pytest.approx(copy)
        else:
            assert r < 0
    # swapping two tied items keeps the output perfect -> full credit
    p = next(i for i in range(K - 1) if labels[i] == labels[i + 1])
    tied = IDENTITY.copy()
    tied[p], tied[p + 1] = tied[p + 1], tied[p]
    assert fn(tied, labels) == pytest.approx(ALPHA)


@pytest.mark.parametrize("labels", MULTI_LABELS + PERFECT_LABELS)
def test_monotone_in_metric(labels: list[int]) -> None:
    orders = random_orders(120, seed=sum(labels) + 13 * labels.index(max(labels)))
    orders.append(IDENTITY)
    orders.append(sorted(range(K), key=lambda i: -labels[i]))
    for ok in (True, False):
        auc = [(auc_correct_pairs(labels, o), auc_reward(o, labels, reasoning_ok=ok)) for o in orders]
        nd = [(ndcg_of_order(o, labels), ndcg_reward(o, labels, reasoning_ok=ok)) for o in orders]
        for (ma, ra), (mb, rb) in itertools.combinations(auc, 2):
            if ma > mb:
                assert ra > rb  # more correct pairs -> strictly more reward
            elif ma == mb:
                assert ra == pytest.approx(rb)
        for (ma, ra), (mb, rb) in itertools.combinations(nd, 2):
            if ma > mb + 1e-12:
                assert ra > rb
            elif abs(ma - mb) <= 1e-12:
                assert ra == pytest.approx(rb)


# --------------------------------------------------------------------------- #
# soft overlong penalty
# --------------------------------------------------------------------------- #
def test_overlong_boundaries() -> None:
    lmax, lc = 100, 20
    assert soft_overlong_penalty(0, lmax, lc) == 0.0
    assert soft_overlong_penalty(79, lmax, lc) == 0.0
    assert soft_overlong_penalty(80, lmax, lc) == 0.0  # L_max - L_c
    assert soft_overlong_penalty(81, lmax, lc) == pytest.approx(-1 / 20)
    assert soft_overlong_penalty(90, lmax, lc) == pytest.approx(-0.5)
    assert soft_overlong_penalty(99, lmax, lc) == pytest.approx(-19 / 20)
    assert soft_overlong_penalty(100, lmax, lc) == pytest.approx(-1.0)  # L_max
    assert soft_overlong_penalty(101, lmax, lc) == -1.0
    assert soft_overlong_penalty(10**6, lmax, lc) == -1.0


def test_overlong_continuity_and_monotonicity() -> None:
    for lmax, lc in ((100, 20), (4096, 512), (50, 50), (10, 1)):
        vals = [soft_overlong_penalty(n, lmax, lc) for n in range(0, lmax + 10)]
        assert all(-1.0 <= v <= 0.0 for v in vals)
        assert all(b <= a for a, b in zip(vals, vals[1:]))  # non-increasing
        # steps of one token never change the penalty by more than 1/L_c (no jumps)
        assert all(abs(b - a) <= 1 / lc + 1e-12 for a, b in zip(vals, vals[1:]))
        assert vals[lmax - lc] == 0.0
        assert vals[lmax] == pytest.approx(-1.0)


def test_overlong_degenerate_and_errors() -> None:
    assert soft_overlong_penalty(100, 100, 0) == 0.0
    assert soft_overlong_penalty(101, 100, 0) == -1.0
    assert soft_overlong_penalty(np.int64(90), 100, 20) == pytest.approx(-0.5)
    for args in ((-1, 100, 20), (10, 100, 101), (10, 100, -1), (10, -5, 0)):
        with pytest.raises(ValueError):
            soft_overlong_penalty(*args)
    with pytest.raises(TypeError):
        soft_overlong_penalty(1.5, 100, 20)  # type: ignore[arg-type]


@HYP
@given(
    lmax=st.integers(1, 10_000),
    frac=st.floats(0, 1),
    length=st.integers(0, 20_000),
)
def test_overlong_property(lmax: int, frac: float, length: int) -> None:
    lc = int(frac * lmax)
    v = soft_overlong_penalty(length, lmax, lc)
    assert -1.0 <= v <= 0.0
    if length <= lmax - lc:
        assert v == 0.0
    if length > lmax:
        assert v == -1.0


# --------------------------------------------------------------------------- #
# identity-copy logging helper
# --------------------------------------------------------------------------- #
def test_identity_copy() -> None:
    assert identity_copy(IDENTITY)
    assert identity_copy(np.arange(K))
    assert identity_copy([0])
    assert not identity_copy([1, 0] + IDENTITY[2:])
    assert not identity_copy(None)
    assert not identity_copy([0, 0, 1])
    assert not identity_copy([])
    shown = [3, 1, 2, 0]
    assert identity_copy(shown, shown=shown)
    assert not identity_copy([0, 1, 2, 3], shown=shown)
    assert not identity_copy(shown, shown=[0, 0, 1, 2])


# --------------------------------------------------------------------------- #
# hypothesis properties
# --------------------------------------------------------------------------- #
@st.composite
def slates(draw, min_k: int = 1, max_k: int = 10):
    k = draw(st.integers(min_k, max_k))
    labels = draw(st.lists(st.integers(0, 2), min_size=k, max_size=k))
    order = draw(st.permutations(list(range(k))))
    return k, labels, list(order)


@st.composite
def single_slates(draw, min_k: int = 1, max_k: int = 10):
    k = draw(st.integers(min_k, max_k))
    t = draw(st.integers(0, k - 1))
    grade = draw(st.sampled_from([1, 2]))
    labels = [grade if i == t else 0 for i in range(k)]
    order = draw(st.permutations(list(range(k))))
    return k, t, labels, list(order)


alphas = st.floats(0.0, 1.0, allow_nan=False)


@HYP
@given(slate=slates(), alpha=alphas, ok=st.booleans())
def test_property_multi_positive_bounds(slate, alpha: float, ok: bool) -> None:
    k, labels, order = slate
    for name, fn in MULTI_REWARDS.items():
        r = fn(order, labels, alpha=alpha, reasoning_ok=ok)
        lo, hi = valid_bounds(name, k, alpha)
        assert math.isfinite(r)
        assert lo - 1e-9 <= r <= hi + 1e-9
        assert fn(None, labels, alpha=alpha, reasoning_ok=ok) == DEFAULT_INVALID < r
        # identity: exactly 0 on a non-perfect input, alpha*R_fmt on a perfect one
        copy = fn(list(range(k)), labels, alpha=alpha, reasoning_ok=ok)
        if is_perfect(labels, list(range(k))):
            assert copy == pytest.approx(alpha * ok)
            assert r <= copy + 1e-12
        else:
            assert copy == 0.0
        assert copy <= alpha


@HYP
@given(slate=single_slates(), alpha=alphas, ok=st.booleans())
def test_property_single_positive(slate, alpha: float, ok: bool) -> None:
    k, t, labels, order = slate
    for name, fn in REWARDS.items():
        r = fn(order, labels, alpha=alpha, reasoning_ok=ok)
        lo, hi = valid_bounds(name, k, alpha)
        assert math.isfinite(r)
        assert lo - 1e-9 <= r <= hi + 1e-9
        assert fn(None, labels, alpha=alpha, reasoning_ok=ok) < r
    assert auc_reward(order, labels, alpha=alpha, reasoning_ok=ok) == conditional_reward(
        order, labels, alpha=alpha, reasoning_ok=ok
    )
    ident = list(range(k))
    for name, fn in ANTI_HACK_REWARDS.items():
        copy = fn(ident, labels, alpha=alpha, reasoning_ok=ok)
        r = fn(order, labels, alpha=alpha, reasoning_ok=ok)
        if order.index(t) < t:
            assert r > copy
        else:
            assert r <= copy + 1e-12


@HYP
@given(slate=slates(min_k=2), alpha=alphas, ok=st.booleans(), data=st.data())
def test_property_fixing_an_adjacent_inversion_strictly_helps(slate, alpha, ok, data) -> None:
    k, labels, order = slate
    inversions = [p for p in range(k - 1) if labels[order[p]] < labels[order[p + 1]]]
    if not inversions:
        return
    p = data.draw(st.sampled_from(inversions))
    fixed = order.copy()
    fixed[p], fixed[p + 1] = fixed[p + 1], fixed[p]
    for fn in MULTI_REWARDS.values():
        assert fn(fixed, labels, alpha=alpha, reasoning_ok=ok) > fn(order, labels, alpha=alpha, reasoning_ok=ok)


@HYP
@given(slate=slates(), alpha=alphas)
def test_property_reasoning_only_adds_format_credit(slate, alpha: float) -> None:
    k, labels, order = slate
    fns = dict(MULTI_REWARDS)
    if sum(1 for g in labels if g > 0) == 1:
        fns.update(SINGLE_REWARDS)
    for fn in fns.values():
        with_r = fn(order, labels, alpha=alpha, reasoning_ok=True)
        without = fn(order, labels, alpha=alpha, reasoning_ok=False)
        assert without == fn(order, labels, alpha=0.0)
        assert with_r - without in (pytest.approx(0.0), pytest.approx(alpha))
