"""Tests for gr2.metrics.ranking.

Hand-computed cases plus a cross-check against trec_eval (through
``ir_measures`` 0.4.3's pytrec_eval provider, i.e. ``pytrec-eval-terrier``).

Note on NDCG definitions: trec_eval's ``ndcg_cut`` uses the *linear* gain
``gain = label`` with discount ``1 / log2(rank + 1)``, whereas gr2 uses the
exponential gain ``2**label - 1`` with the same discount. Both agree on binary
labels, so the plain ``nDCG@k`` cross-check uses binary labels. For graded
labels we (a) pass trec_eval the explicit gain map ``{g: 2**g - 1}`` through
``nDCG(gains=...)`` and (b) compare against an independent loop-based
reference implementation of the exponential-gain formula below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gr2.metrics.ranking import (
    evaluate_rankings,
    labels_in_order,
    metric_keys,
    mrr,
    ndcg_at_k,
    pairwise_auc,
    pairwise_auc_counts,
    per_list_metrics,
    rank_of,
    recall_at_k,
)

INV_LOG2_3 = 0.6309297535714575  # 1 / log2(3)


# --------------------------------------------------------------------------- #
# independent (loop-based) reference implementations
# --------------------------------------------------------------------------- #
def ref_dcg(ranked: list[float], k: int, exp_gain: bool = True) -> float:
    total = 0.0
    for pos, g in enumerate(ranked[:k]):
        gain = (2.0**g - 1.0) if exp_gain else float(g)
        total += gain / math.log2(pos + 2)
    return total


def ref_ndcg(ranked: list[float], k: int, exp_gain: bool = True) -> float:
    ideal = ref_dcg(sorted(ranked, reverse=True), k, exp_gain)
    return math.nan if ideal == 0 else ref_dcg(ranked, k, exp_gain) / ideal


def ref_auc(ranked: list[float]) -> float:
    good = total = 0
    for p in range(len(ranked)):
        for q in range(p + 1, len(ranked)):
            if ranked[p] != ranked[q]:
                total += 1
                good += ranked[p] > ranked[q]
    return math.nan if total == 0 else good / total


def nan_equal(a: float, b: float, tol: float = 1e-12) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


# --------------------------------------------------------------------------- #
# labels_in_order / rank_of
# --------------------------------------------------------------------------- #
def test_labels_in_order_basic() -> None:
    labels = [0, 2, 0, 1]
    out = labels_in_order([3, 1, 0, 2], labels)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1, 2, 0, 0])
    np.testing.assert_array_equal(labels_in_order(np.array([1, 0]), np.array([5.0, 7.0])), [7, 5])
    assert labels_in_order([], []).shape == (0,)


@pytest.mark.parametrize(
    "order, labels, match",
    [
        ([0, 0, 1], [0, 1, 0], r"duplicated indices \[0\], missing indices \[2\]"),
        ([0, 1, 3], [0, 1, 0], "out of range"),
        ([-1, 0, 1], [0, 1, 0], "out of range"),
        ([0, 1], [0, 1, 0], "2 entries but there are 3 candidates"),
        ([0, 1, 2, 3], [0, 1, 0], "4 entries but there are 3 candidates"),
        ([0.0, 1.0], [0, 1], "integers"),
        ([[0, 1]], [0, 1], "1-D"),
    ],
)
def test_labels_in_order_rejects_non_permutations(order, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        labels_in_order(order, labels)


def test_labels_in_order_error_says_permutation() -> None:
    with pytest.raises(ValueError, match="not a permutation of 0..2"):
        labels_in_order([2, 2, 0], [1, 0, 0])


@pytest.mark.parametrize("labels", [[0, -1, 1], [0, math.nan, 1], [0, math.inf, 1]])
def test_invalid_labels_rejected(labels) -> None:
    with pytest.raises(ValueError):
        labels_in_order([0, 1, 2], labels)
    with pytest.raises(ValueError):
        recall_at_k(labels, 1)
    with pytest.raises(ValueError):
        ndcg_at_k(labels, 1)
    with pytest.raises(ValueError):
        mrr(labels)
    with pytest.raises(ValueError):
        pairwise_auc(labels)


def test_rank_of() -> None:
    order = [4, 2, 0, 3, 1]
    assert [rank_of(order, i) for i in range(5)] == [3, 5, 2, 4, 1]
    assert rank_of(np.array(order), np.int64(4)) == 1
    with pytest.raises(ValueError, match="not in order"):
        rank_of(order, 5)
    with pytest.raises(ValueError, match="permutation"):
        rank_of([0, 0, 1], 1)


# --------------------------------------------------------------------------- #
# single positive at every rank
# --------------------------------------------------------------------------- #
# 1 / log2(r + 1) for r = 1..10, written out
DISCOUNT = {
    1: 1.0,
    2: INV_LOG2_3,
    3: 0.5,
    4: 0.43067655807339306,
    5: 0.38685280723454163,
    6: 0.3562071871080222,
    7: 1.0 / 3.0,
    8: 0.31546487678572877,
    9: 0.30102999566398120,
    10: 0.2890648263178879,
}


@pytest.mark.parametrize("rank", range(1, 11))
@pytest.mark.parametrize("grade", [1, 2])
def test_single_positive_every_rank(rank: int, grade: int) -> None:
    K = 10
    ranked = [0] * K
    ranked[rank - 1] = grade
    for k in range(1, 11):
        assert recall_at_k(ranked, k) == (1.0 if rank <= k else 0.0)
        expected = DISCOUNT[rank] if rank <= k else 0.0
        assert ndcg_at_k(ranked, k) == pytest.approx(expected, abs=1e-12)
    for k in (1, 3, 5, 10):
        assert recall_at_k(ranked, k) == float(rank <= k)  # hit rate
    assert mrr(ranked) == pytest.approx(1.0 / rank)
    # AUC: the positive beats the K - rank negatives below it, out of K - 1 pairs
    assert pairwise_auc(ranked) == pytest.approx((K - rank) / (K - 1))


def test_single_positive_via_order() -> None:
    # candidate 7 is the positive; the model ranks it 4th
    labels = [0] * 10
    labels[7] = 1
    order = [3, 1, 9, 7, 0, 2, 4, 5, 6, 8]
    assert rank_of(order, 7) == 4
    ranked = labels_in_order(order, labels)
    assert recall_at_k(ranked, 3) == 0.0
    assert recall_at_k(ranked, 5) == 1.0
    assert ndcg_at_k(ranked, 5) == pytest.approx(DISCOUNT[4])
    assert mrr(ranked) == 0.25


# --------------------------------------------------------------------------- #
# multi-positive / graded hand-computed cases
# --------------------------------------------------------------------------- #
def test_recall_multi_positive() -> None:
    ranked = [0, 1, 0, 2, 1]  # 3 positives at ranks 2, 4, 5
    assert recall_at_k(ranked, 1) == 0.0
    assert recall_at_k(ranked, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, 3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, 5) == 1.0
    assert recall_at_k(ranked, 100) == 1.0  # k beyond the list


def test_ndcg_graded_hand_computed() -> None:
    ranked = [1, 0, 2, 0, 1]
    # gains 2^g - 1: [1, 0, 3, 0, 1]; ideal gains: [3, 1, 1, 0, 0]
    # DCG@3 = 1/1 + 0/log2(3) + 3/log2(4) = 1 + 1.5 = 2.5
    # IDCG@3 = 3/1 + 1/log2(3) + 1/log2(4) = 3 + 0.63093 + 0.5
    idcg3 = 3.0 + INV_LOG2_3 + 0.5
    assert ndcg_at_k(ranked, 3) == pytest.approx(2.5 / idcg3, abs=1e-12)
    assert ndcg_at_k(ranked, 3) == pytest.approx(0.6051906, abs=1e-7)
    # DCG@5 = 2.5 + 1/log2(6); IDCG@5 = IDCG@3
    assert ndcg_at_k(ranked, 5) == pytest.approx((2.5 + DISCOUNT[5]) / idcg3, abs=1e-12)
    # @1: ranked top has gain 1, ideal top has gain 3
    assert ndcg_at_k(ranked, 1) == pytest.approx(1 / 3)
    # k beyond length == full list
    assert ndcg_at_k(ranked, 50) == ndcg_at_k(ranked, 5)


def test_ndcg_graded_two_levels() -> None:
    ranked = [0, 2, 1]
    # DCG = 3/log2(3) + 1/log2(4); IDCG = 3 + 1/log2(3)
    expected = (3 * INV_LOG2_3 + 0.5) / (3 + INV_LOG2_3)
    assert ndcg_at_k(ranked, 3) == pytest.approx(expected, abs=1e-12)
    assert ndcg_at_k(ranked, 3) == pytest.approx(0.6590018048, abs=1e-9)
    # DCG@2 = 3/log2(3); IDCG@2 = 3 + 1/log2(3)
    assert ndcg_at_k(ranked, 2) == pytest.approx(3 * INV_LOG2_3 / (3 + INV_LOG2_3), abs=1e-12)


def test_ndcg_perfect_and_bounds() -> None:
    assert ndcg_at_k([2, 1, 1, 0, 0], 3) == 1.0
    assert ndcg_at_k([1, 1, 1], 2) == 1.0
    assert ndcg_at_k([0, 0, 0, 1], 3) == 0.0
    rng = np.random.default_rng(1)
    for _ in range(50):
        lab = rng.integers(0, 3, size=12)
        if lab.max() > 0:
            assert 0.0 <= ndcg_at_k(lab, 5) <= 1.0


def test_mrr_multi_positive() -> None:
    assert mrr([0, 0, 2, 1]) == pytest.approx(1 / 3)
    assert mrr([1, 0]) == 1.0
    assert mrr(np.array([0.0, 0.5])) == 0.5


def test_auc_binary() -> None:
    assert pairwise_auc([1, 1, 0, 0]) == 1.0
    assert pairwise_auc([0, 0, 1, 1]) == 0.0
    # positives at ranks 2 and 4, negatives at 1 and 3: only (2, 3) is correct
    assert pairwise_auc([0, 1, 0, 1]) == 0.25
    assert pairwise_auc([1, 0, 1, 0]) == 0.75


def test_auc_graded_with_ties() -> None:
    # all 8 pairs with different labels are ordered correctly; tied pairs ignored
    assert pairwise_auc([2, 1, 1, 0, 0]) == 1.0
    # labels by rank: 1, 2, 0, 1, 0. Differing pairs (p<q), correct?:
    # (1,2) no, (1,3) yes, (1,5) yes, (2,3) yes, (2,4) yes, (2,5) yes, (3,4) no, (4,5) yes
    # tied pairs (1,4) and (3,5) are skipped -> 6 / 8
    assert pairwise_auc([1, 2, 0, 1, 0]) == 0.75
    # only positives of different grade: 2 above 1 correct, 1 above 2 wrong
    assert pairwise_auc([2, 1]) == 1.0
    assert pairwise_auc([1, 2]) == 0.0


def test_no_positive_gives_nan() -> None:
    for ranked in ([0, 0, 0], [0], []):
        assert math.isnan(recall_at_k(ranked, 1))
        assert math.isnan(recall_at_k(ranked, 10))
        assert math.isnan(ndcg_at_k(ranked, 3))
        assert math.isnan(mrr(ranked))
        assert math.isnan(pairwise_auc(ranked))


def test_auc_nan_without_label_differences() -> None:
    assert math.isnan(pairwise_auc([1, 1, 1]))
    assert math.isnan(pairwise_auc([2]))
    # other metrics are still defined when all are positive
    assert ndcg_at_k([1, 1, 1], 3) == 1.0
    assert recall_at_k([1, 1, 1], 1) == pytest.approx(1 / 3)


def test_auc_counts() -> None:
    # pairs with different labels: (2,1), (2,0)x2, (1,0)x2 = 5; in order [0, 2, 1, 0]: 3 correct
    assert pairwise_auc_counts([0, 2, 1, 0]) == (3, 5)
    assert pairwise_auc_counts([1, 1, 1]) == (0, 0)
    assert pairwise_auc_counts([2]) == (0, 0)
    for lab in _random_runs(seed=5, n=100, max_grade=2):
        correct, total = pairwise_auc_counts(lab)
        assert isinstance(correct, int) and isinstance(total, int)
        assert nan_equal(pairwise_auc(lab), correct / total if total else math.nan, tol=0.0)


def test_rewards_read_nan_as_every_order_perfect() -> None:
    """One NDCG, one AUC: the RL rewards' metrics are these functions, with ``nan`` (undefined) read
    as 1.0 — every order of a degenerate list is perfect, so its ranking gain is 0."""
    from gr2.rl.rewards import ndcg_of_order, pairwise_auc_of_order

    rng = np.random.default_rng(3)
    for lab in _random_runs(seed=7, n=150, max_grade=2):
        order = rng.permutation(len(lab))
        ranked = labels_in_order(order, lab)
        for ours, theirs in ((ndcg_at_k(ranked, len(lab)), ndcg_of_order(order, lab)),
                             (pairwise_auc(ranked), pairwise_auc_of_order(order, lab))):
            assert theirs == (1.0 if math.isnan(ours) else ours)


@pytest.mark.parametrize("bad_k", [0, -1])
def test_bad_k_value(bad_k: int) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k([1, 0], bad_k)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k([1, 0], bad_k)


@pytest.mark.parametrize("bad_k", [1.0, True, "3", None])
def test_bad_k_type(bad_k) -> None:
    with pytest.raises(TypeError):
        recall_at_k([1, 0], bad_k)
    with pytest.raises(TypeError):
        ndcg_at_k([1, 0], bad_k)


def test_numpy_k_accepted() -> None:
    assert recall_at_k([0, 1], np.int64(2)) == 1.0


def test_labels_2d_rejected() -> None:
    with pytest.raises(ValueError, match="1-D"):
        ndcg_at_k([[1, 0]], 1)


# --------------------------------------------------------------------------- #
# per_list_metrics / evaluate_rankings
# --------------------------------------------------------------------------- #
EXPECTED_KEYS = ["R@1", "R@3", "R@5", "R@10", "N@3", "N@5", "N@10", "MRR", "AUC"]


def test_metric_keys_default() -> None:
    assert metric_keys() == EXPECTED_KEYS


def test_evaluate_rankings_hand_example() -> None:
    orders = [
        [1, 0, 2],  # labels by rank: 1, 0, 0 -> positive at rank 1
        [0, 1, 2, 3],  # labels by rank: 0, 0, 0, 1 -> rank 4
        [2, 1, 0],  # no positive: skipped everywhere
    ]
    labels = [[0, 1, 0], [0, 0, 0, 1], [0, 0, 0]]
    res = evaluate_rankings(orders, labels)
    assert list(res) == EXPECTED_KEYS + ["n"]
    assert res["n"] == 3
    assert res["R@1"] == 0.5
    assert res["R@3"] == 0.5
    assert res["R@5"] == 1.0
    assert res["R@10"] == 1.0
    assert res["N@3"] == pytest.approx(0.5)
    assert res["N@5"] == pytest.approx((1.0 + DISCOUNT[4]) / 2)
    assert res["N@10"] == pytest.approx((1.0 + DISCOUNT[4]) / 2)
    assert res["MRR"] == pytest.approx((1.0 + 0.25) / 2)
    assert res["AUC"] == pytest.approx((1.0 + 0.0) / 2)

    per = per_list_metrics(orders, labels)
    assert list(per) == EXPECTED_KEYS
    for key, vals in per.items():
        assert vals.shape == (3,) and vals.dtype == np.float64
        assert math.isnan(vals[2])
        assert res[key] == pytest.approx(np.nanmean(vals))
    np.testing.assert_allclose(per["MRR"][:2], [1.0, 0.25])


def test_evaluate_rankings_custom_ks_and_all_nan() -> None:
    res = evaluate_rankings([[0, 1]], [[0, 0]], recall_ks=(2,), ndcg_ks=(1, 2))
    assert list(res) == ["R@2", "N@1", "N@2", "MRR", "AUC", "n"]
    assert res["n"] == 1
    assert all(math.isnan(res[k]) for k in ["R@2", "N@1", "N@2", "MRR", "AUC"])
    empty = evaluate_rankings([], [])
    assert empty["n"] == 0 and math.isnan(empty["MRR"])


def test_per_list_metrics_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        per_list_metrics([[0, 1]], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="list 1: order is not a permutation"):
        per_list_metrics([[0, 1], [1, 1]], [[0, 1], [1, 0]])
    with pytest.raises(ValueError):
        per_list_metrics([[0, 1]], [[0, 1]], recall_ks=(0,))


def test_per_list_matches_single_functions_random() -> None:
    rng = np.random.default_rng(0)
    orders, labels = [], []
    for _ in range(100):
        K = int(rng.integers(1, 25))
        labels.append(rng.integers(0, 3, size=K))
        orders.append(rng.permutation(K))
    per = per_list_metrics(orders, labels)
    for i, (o, lab) in enumerate(zip(orders, labels)):
        ranked = list(lab[o])
        for k in (1, 3, 5, 10):
            assert nan_equal(per[f"R@{k}"][i], recall_at_k(ranked, k))
        for k in (3, 5, 10):
            assert nan_equal(per[f"N@{k}"][i], ref_ndcg(ranked, k), tol=1e-12)
        assert nan_equal(per["AUC"][i], ref_auc(ranked))
        assert nan_equal(per["MRR"][i], mrr(ranked))


# --------------------------------------------------------------------------- #
# cross-check against trec_eval (ir_measures -> pytrec_eval) and sklearn
# --------------------------------------------------------------------------- #
def _random_runs(seed: int, n: int, max_grade: int) -> list[np.ndarray]:
    """Random ranked label lists of random length, some without positives."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        K = int(rng.integers(1, 31))
        p = rng.uniform(0.05, 0.6)
        lab = np.where(rng.random(K) < p, rng.integers(1, max_grade + 1, size=K), 0)
        out.append(lab.astype(np.int64))
    return out


def _trec_eval(measures, runs: list[np.ndarray]) -> dict[tuple[str, str], float]:
    """Evaluate with trec_eval; the doc at rank r gets score K - r (no ties)."""
    ir_measures = pytest.importorskip("ir_measures")
    qrels, run = [], []
    for qi, lab in enumerate(runs):
        K = len(lab)
        for pos, g in enumerate(lab):
            qrels.append(ir_measures.Qrel(f"q{qi}", f"d{pos}", int(g)))
            run.append(ir_measures.ScoredDoc(f"q{qi}", f"d{pos}", float(K - pos)))
    # Use the pytrec_eval provider explicitly. NB: ir_measures 0.4.3 mixes up
    # results when nDCG with and without `gains` are requested in one call, so
    # callers pass one kind per call.
    return {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.pytrec_eval.iter_calc(measures, qrels, run)
    }


def test_crosscheck_trec_eval_binary() -> None:
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import RR, R, nDCG

    runs = [np.minimum(lab, 1) for lab in _random_runs(seed=123, n=200, max_grade=1)]
    ks = (1, 3, 5, 10)
    measures = [R @ k for k in ks] + [nDCG @ k for k in ks] + [RR]
    ref = _trec_eval(measures, runs)
    n_checked = 0
    for qi, lab in enumerate(runs):
        q = f"q{qi}"
        if lab.sum() == 0:  # trec_eval has no defined value; we return nan
            assert math.isnan(mrr(lab)) and math.isnan(ndcg_at_k(lab, 3))
            continue
        n_checked += 1
        for k in ks:
            assert recall_at_k(lab, k) == pytest.approx(ref[(q, str(R @ k))], abs=1e-9)
            assert ndcg_at_k(lab, k) == pytest.approx(ref[(q, str(nDCG @ k))], abs=1e-9)
        assert mrr(lab) == pytest.approx(ref[(q, str(RR))], abs=1e-9)
    assert n_checked > 150
    assert ir_measures.__version__ == "0.4.3"


def test_crosscheck_trec_eval_graded() -> None:
    pytest.importorskip("ir_measures")
    from ir_measures import RR, R, nDCG

    runs = _random_runs(seed=7, n=200, max_grade=3)
    ks = (1, 3, 5, 10)
    exp_gains = {g: 2**g - 1 for g in range(4)}  # gr2's gain as a trec_eval gain map
    ref_exp = _trec_eval([nDCG(gains=exp_gains) @ k for k in ks], runs)
    ref_lin = _trec_eval([nDCG @ k for k in ks] + [R @ k for k in ks] + [RR], runs)
    n_checked = n_differs = 0
    for qi, lab in enumerate(runs):
        q = f"q{qi}"
        if lab.sum() == 0:
            continue
        n_checked += 1
        for k in ks:
            ours = ndcg_at_k(lab, k)
            assert ours == pytest.approx(ref_exp[(q, str(nDCG(gains=exp_gains) @ k))], abs=1e-9)
            assert ours == pytest.approx(ref_ndcg(list(lab), k), abs=1e-12)
            # trec_eval's default nDCG is the linear-gain variant
            lin = ref_lin[(q, str(nDCG @ k))]
            assert lin == pytest.approx(ref_ndcg(list(lab), k, exp_gain=False), abs=1e-9)
            n_differs += abs(lin - ours) > 1e-6
            # recall / RR only look at label > 0 (trec_eval relevance_level 1)
            assert recall_at_k(lab, k) == pytest.approx(ref_lin[(q, str(R @ k))], abs=1e-9)
        assert mrr(lab) == pytest.approx(ref_lin[(q, str(RR))], abs=1e-9)
    assert n_checked > 150
    assert n_differs > 0  # the two gain conventions really differ on graded labels


def test_crosscheck_auc_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    runs = _random_runs(seed=11, n=200, max_grade=2)
    n_checked = 0
    for lab in runs:
        ours = pairwise_auc(lab)
        assert nan_equal(ours, ref_auc(list(lab)))
        binary = (lab > 0).astype(int)
        if 0 < binary.sum() < len(binary):
            scores = -np.arange(len(lab), dtype=float)  # earlier rank = higher score
            assert pairwise_auc(binary) == pytest.approx(
                sk.roc_auc_score(binary, scores), abs=1e-12
            )
            n_checked += 1
    assert n_checked > 100
