"""Tests of the LambdaMART re-ranker and its features (small synthetic data, a few seconds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gr2.rerank import (
    FEATURE_NAMES,
    LLM_FEATURE_NAMES,
    LLM_SCORES_COLUMN,
    FeatureBuilder,
    LambdaMARTConfig,
    LambdaMARTReranker,
)
from gr2.rerank.features import llm_score_features

K = 10
N_ITEMS = 60


# --------------------------------------------------------------------------- #
# hand-checked features on a 2-list example
# --------------------------------------------------------------------------- #
def _tiny_items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [0, 1, 2, 3, 4, 5],
            "title": ["red nail polish", "black eye liner", "blue eye shadow", "face cream",
                      "black eye liner", "mystery box"],
            "categories": [
                ["Beauty", "Makeup", "Nails"],
                ["Beauty", "Makeup", "Eyes", "Liner"],
                ["Beauty", "Makeup", "Eyes", "Shadow"],
                ["Beauty", "Skin"],
                ["Beauty", "Makeup", "Eyes", "Liner"],
                [],
            ],
        }
    )


TINY_TRAIN = [[0, 1, 2], [0, 1, 3], [4, 5]]  # T[0,1]=2, T[1,2]=1, T[1,3]=1, T[4,5]=1


def _tiny_lists() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [0, 1],
            "history": [[0, 1], [4]],
            "candidates": [[2, 0, 3, 5], [5, 1, 2, 3]],
            "scores": [[3.0, 2.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]],
            "labels": [[1, 0, 0, 0], [0, 1, 0, 0]],
            "target": [2, 1],
        }
    )


@pytest.fixture(scope="module")
def tiny_features() -> pd.DataFrame:
    fb = FeatureBuilder().fit(_tiny_items(), TINY_TRAIN)
    X, groups, names = fb.transform(_tiny_lists())
    assert X.dtype == np.float32 and X.shape == (8, len(FEATURE_NAMES))
    assert groups.tolist() == [4, 4] and names == list(FEATURE_NAMES)
    return pd.DataFrame(X, columns=names)


def _col(df: pd.DataFrame, name: str, lst: int) -> list[float]:
    return df[name].to_numpy(dtype=np.float64)[lst * 4 : lst * 4 + 4].tolist()


def test_list_features(tiny_features: pd.DataFrame) -> None:
    f = tiny_features
    assert _col(f, "pos", 0) == [0, 1, 2, 3]
    assert _col(f, "score", 0) == [3, 2, 2, 1]
    assert _col(f, "score_gap_best", 0) == [0, 1, 1, 2]
    gap_next = _col(f, "score_gap_next", 0)
    assert gap_next[:3] == [1, 0, 1] and math.isnan(gap_next[3])
    assert _col(f, "score_z", 1) == [0, 0, 0, 0]  # constant scores
    assert _col(f, "hist_len", 0) == [2] * 4 and _col(f, "hist_len", 1) == [1] * 4


def test_train_statistics_features(tiny_features: pd.DataFrame) -> None:
    f = tiny_features
    assert _col(f, "seen", 0) == [0, 1, 0, 0]
    assert _col(f, "seen", 1) == [0, 0, 0, 0]
    assert _col(f, "trans_last", 0) == [1, 0, 1, 0]  # last item 1: 1->2, 1->3
    assert _col(f, "trans_last_prob", 0) == [0.5, 0, 0.5, 0]
    assert _col(f, "trans_last3", 0) == [1, 0, 1, 0]  # T[1,c] + T[0,c]
    assert _col(f, "trans_rev_last", 0) == [0, 2, 0, 0]  # 0->1 twice
    assert _col(f, "trans_rev_last3", 0) == [0, 2, 0, 0]
    assert _col(f, "trans_last", 1) == [1, 0, 0, 0]  # 4->5
    pop = {0: 2, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
    np.testing.assert_allclose(_col(f, "log_pop", 0), [math.log1p(pop[c]) for c in (2, 0, 3, 5)], rtol=1e-6)


def test_category_features(tiny_features: pd.DataFrame) -> None:
    f = tiny_features
    # list 0, last item 1 = Beauty/Makeup/Eyes/Liner; candidates 2, 0, 3, 5
    assert _col(f, "cat_lcp_last", 0) == [3, 2, 1, 0]
    assert _col(f, "cat_share_d1", 0) == [1, 1, 1, 0]  # item 5 has no category
    assert _col(f, "cat_share_d2", 0) == [1, 1, 0, 0]
    assert _col(f, "cat_share_d3", 0) == [0.5, 0.5, 0, 0]  # Eyes (item 1) / Nails (item 0)
    assert _col(f, "cat_share_d4", 0) == [0, 0, 0, 0]
    # list 1, last item 4 = Beauty/Makeup/Eyes/Liner; candidates 5, 1, 2, 3
    assert _col(f, "cat_lcp_last", 1) == [0, 4, 3, 1]
    assert _col(f, "cat_share_d4", 1) == [0, 1, 0, 0]


def test_tfidf_features(tiny_features: pd.DataFrame) -> None:
    f = tiny_features
    last1 = _col(f, "tfidf_last", 1)
    assert last1[1] == pytest.approx(1.0, abs=1e-5)  # identical text as the last item
    assert last1[0] == pytest.approx(0.0, abs=1e-6)  # no shared token (and no category)
    assert 0 < last1[2] < 1  # shares "eye" and Beauty/Makeup/Eyes
    # a single-item history: max = mean = last
    np.testing.assert_allclose(_col(f, "tfidf_max", 1), last1, atol=1e-6)
    np.testing.assert_allclose(_col(f, "tfidf_mean", 1), last1, atol=1e-6)
    # list 0: candidate 0 is in the history -> max similarity 1
    assert _col(f, "tfidf_max", 0)[1] == pytest.approx(1.0, abs=1e-5)
    m0, x0 = np.array(_col(f, "tfidf_mean", 0)), np.array(_col(f, "tfidf_max", 0))
    assert np.all(m0 <= x0 + 1e-6)


def test_empty_history_and_inf_scores() -> None:
    fb = FeatureBuilder().fit(_tiny_items(), TINY_TRAIN)
    df = pd.DataFrame({"history": [[]], "candidates": [[1, 2, 3]], "scores": [[1.0, 0.5, -np.inf]]})
    X, groups, names = fb.transform(df)
    f = pd.DataFrame(X, columns=names)
    assert groups.tolist() == [3]
    assert f["trans_last"].tolist() == [0, 0, 0] and f["tfidf_max"].tolist() == [0, 0, 0]
    assert f["cat_share_d1"].tolist() == [0, 0, 0] and f["seen"].tolist() == [0, 0, 0]
    assert math.isnan(f["score"][2]) and not math.isnan(f["score"][0])


# --------------------------------------------------------------------------- #
# synthetic task: the target always follows the last history item (i -> i+1)
# --------------------------------------------------------------------------- #
def _synthetic_items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": np.arange(N_ITEMS),
            "title": [f"product {i} shade{i % 7}" for i in range(N_ITEMS)],
            "categories": [["Beauty", f"Cat{i % 3}", f"Sub{i % 6}"] for i in range(N_ITEMS)],
        }
    )


def _synthetic_train(seed: int = 0, n: int = 300) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(4, 9))
        out.append([(start + j) % N_ITEMS for j in range(length)])
    return out


def _synthetic_lists(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        length = int(rng.integers(2, 6))
        start = int(rng.integers(N_ITEMS))
        hist = [(start + j) % N_ITEMS for j in range(length)]
        pool = np.setdiff1d(np.arange(N_ITEMS), hist)
        # 75%: the target follows the last item (i -> i+1); otherwise a random unseen item
        target = (hist[-1] + 1) % N_ITEMS if rng.random() < 0.75 else int(rng.choice(pool))
        others = rng.choice(np.setdiff1d(pool, [target]), K - 1, replace=False)
        # the pre-ranker is weakly informative: the target sits in the top half 70% of the time
        slot = int(rng.integers(0, K // 2)) if rng.random() < 0.7 else int(rng.integers(K // 2, K))
        cands = np.insert(others, slot, target)
        rows.append(
            {
                "user_id": u,
                "history": hist,
                "candidates": cands.tolist(),
                "scores": np.linspace(1.0, 0.1, K).tolist(),
                "labels": (cands == target).astype(int).tolist(),
                "target": target,
            }
        )
    return pd.DataFrame(rows)


def _recall1_ndcg5(orders: list[np.ndarray], labels: list[list[int]]) -> tuple[float, float]:
    r1, n5 = [], []
    for o, lab in zip(orders, labels):
        rank = int(np.flatnonzero(np.asarray(lab)[o] > 0)[0]) + 1
        r1.append(rank == 1)
        n5.append(1 / math.log2(rank + 1) if rank <= 5 else 0.0)
    return float(np.mean(r1)), float(np.mean(n5))


# one thread: on a busy machine two OpenMP threads are ~10x slower for data this small
SMALL = LambdaMARTConfig(n_estimators=60, learning_rate=0.1, num_leaves=7, min_child_samples=5,
                         cv_folds=3, early_stopping_rounds=20, seed=0, num_threads=1)


@pytest.fixture(scope="module")
def synthetic_model() -> tuple[LambdaMARTReranker, pd.DataFrame, pd.DataFrame]:
    fb = FeatureBuilder().fit(_synthetic_items(), _synthetic_train())
    train, test = _synthetic_lists(300, seed=1), _synthetic_lists(100, seed=2)
    return LambdaMARTReranker(fb, SMALL).fit(train), train, test


def test_learns_transition_pattern(synthetic_model) -> None:
    rr, _, test = synthetic_model
    labels = test["labels"].tolist()
    pre = _recall1_ndcg5([np.arange(K)] * len(test), labels)
    lm = _recall1_ndcg5(rr.rerank(test), labels)
    assert pre[0] < 0.3
    assert lm[0] > 0.6 and lm[0] > pre[0] + 0.4
    assert lm[1] > pre[1] + 0.2
    imp = rr.feature_importances()
    assert set(imp) == set(FEATURE_NAMES)
    assert next(iter(imp)).startswith("trans_")  # the top feature is a transition count
    assert 1 <= rr.n_trees <= SMALL.n_estimators and len(rr.cv_curve) == rr.n_trees
    assert rr.fit_info["n_lists"] == 300


def test_orders_are_permutations(synthetic_model) -> None:
    rr, _, test = synthetic_model
    orders = rr.rerank(test)
    assert len(orders) == len(test)
    for o in orders:
        assert o.dtype == np.int64 and sorted(o.tolist()) == list(range(K))
    s = rr.score(test)
    assert s.shape == (len(test), K)
    # best first
    assert np.all(np.diff(np.take_along_axis(s, np.stack(orders), axis=1), axis=1) <= 0)


def test_ties_broken_by_prerank_position(synthetic_model) -> None:
    rr, _, test = synthetic_model

    class ConstantBooster:
        def predict(self, X, num_threads=1):  # noqa: ANN001
            return np.zeros(X.shape[0])

    tied = LambdaMARTReranker(rr.features, rr.config)
    tied.booster = ConstantBooster()
    for o in tied.rerank(test.head(5)):
        assert o.tolist() == list(range(K))


def test_deterministic(synthetic_model) -> None:
    rr, train, test = synthetic_model
    again = LambdaMARTReranker(rr.features, SMALL).fit(train)
    assert rr.n_trees > 1 and again.n_trees == rr.n_trees
    np.testing.assert_array_equal(again.score(test), rr.score(test))
    assert again.booster.model_to_string() == rr.booster.model_to_string()


def test_save_load_round_trip(synthetic_model, tmp_path) -> None:
    rr, _, test = synthetic_model
    rr.save(tmp_path / "lm")
    back = LambdaMARTReranker.load(tmp_path / "lm")
    np.testing.assert_allclose(back.score(test), rr.score(test), rtol=0, atol=1e-12)
    assert [o.tolist() for o in back.rerank(test)] == [o.tolist() for o in rr.rerank(test)]
    assert back.feature_importances() == pytest.approx(rr.feature_importances())
    assert back.config == rr.config and back.n_trees == rr.n_trees


def test_no_cv_uses_n_estimators(synthetic_model) -> None:
    rr, train, _ = synthetic_model
    cfg = LambdaMARTConfig(n_estimators=7, num_leaves=7, min_child_samples=5, cv_folds=0, num_threads=1)
    m = LambdaMARTReranker(rr.features, cfg).fit(train)
    assert m.n_trees == 7 and m.cv_curve == []


def test_fit_errors(synthetic_model) -> None:
    rr, train, _ = synthetic_model
    with pytest.raises(KeyError):
        LambdaMARTReranker(rr.features, SMALL).fit(train.drop(columns=["labels"]))
    with pytest.raises(RuntimeError):
        LambdaMARTReranker(rr.features, SMALL).score(train)
    with pytest.raises(ValueError):
        LambdaMARTReranker(FeatureBuilder(), SMALL)


def test_feature_subset(synthetic_model, tmp_path) -> None:
    import dataclasses

    rr, train, test = synthetic_model
    cfg = dataclasses.replace(SMALL, features=("pos", "score", "log_pop"))
    m = LambdaMARTReranker(rr.features, cfg).fit(train)
    assert m.feature_names == ["pos", "score", "log_pop"]
    assert set(m.feature_importances()) == {"pos", "score", "log_pop"}
    m.save(tmp_path / "sub")
    back = LambdaMARTReranker.load(tmp_path / "sub")
    np.testing.assert_array_equal(back.score(test), m.score(test))
    with pytest.raises(ValueError):
        LambdaMARTReranker(rr.features, dataclasses.replace(SMALL, features=("nope",)))


# --------------------------------------------------------------------------- #
# LLM-score features (the eval's fusion row)
# --------------------------------------------------------------------------- #
def test_llm_score_features_by_hand() -> None:
    f = llm_score_features(np.array([[-1.0, -0.5, -0.5, -np.inf], [np.nan, 2.0, 1.0, 2.0]]))
    assert set(f) == set(LLM_FEATURE_NAMES)
    np.testing.assert_array_equal(f["llm_score"], [[-1.0, -0.5, -0.5, np.nan], [np.nan, 2.0, 1.0, 2.0]])
    # rank by decreasing score; ties keep the pre-rank order; non-finite scores rank last
    np.testing.assert_array_equal(f["llm_rank"], [[2, 0, 1, np.nan], [np.nan, 0, 2, 1]])
    np.testing.assert_array_equal(f["llm_gap_best"], [[0.5, 0.0, 0.0, np.nan], [np.nan, 0.0, 1.0, 0.0]])


def test_llm_score_features_are_appended_to_the_plain_ones() -> None:
    fb = FeatureBuilder().fit(_tiny_items(), TINY_TRAIN)
    fused = fb.with_llm_scores()
    llm = [[-2.0, -1.0, -3.0, -0.5], [0.0, -1.0, -1.0, -2.0]]
    lists = _tiny_lists().assign(**{LLM_SCORES_COLUMN: llm})
    X, groups, names = fused.transform(lists)
    plain, _, plain_names = fb.transform(lists)  # the plain builder ignores the column
    assert names == [*FEATURE_NAMES, *LLM_FEATURE_NAMES] and plain_names == list(FEATURE_NAMES)
    assert list(fused.feature_names) == names and fb.feature_names == FEATURE_NAMES
    np.testing.assert_array_equal(X[:, : len(FEATURE_NAMES)], plain)
    extra = pd.DataFrame(X[:, len(FEATURE_NAMES):], columns=list(LLM_FEATURE_NAMES))
    assert _col(extra, "llm_score", 0) == [-2, -1, -3, -0.5]
    assert _col(extra, "llm_rank", 0) == [2, 1, 3, 0] and _col(extra, "llm_rank", 1) == [0, 1, 2, 3]
    assert _col(extra, "llm_gap_best", 1) == [0, 1, 1, 2]
    assert groups.tolist() == [4, 4]
    with pytest.raises(KeyError, match=LLM_SCORES_COLUMN):
        fused.transform(_tiny_lists())
    with pytest.raises(ValueError, match="llm_scores shape"):
        fused.transform(_tiny_lists().assign(**{LLM_SCORES_COLUMN: [[0.0] * 3] * 2}))


def _with_revealing_llm(lists: pd.DataFrame, seed: int) -> pd.DataFrame:
    """An LLM score that puts the target first in 90% of the lists (random scores otherwise)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(-3.0, 1.0, size=(len(lists), K))
    labels = np.stack(lists["labels"].to_numpy())
    hit = rng.random(len(lists)) < 0.9
    scores[hit] = np.where(labels[hit] > 0, 0.0, scores[hit])
    return lists.assign(**{LLM_SCORES_COLUMN: scores.tolist()})


def test_fused_lambdamart_uses_the_llm_score_and_round_trips(synthetic_model, tmp_path) -> None:
    rr, train, test = synthetic_model
    train, test = _with_revealing_llm(train, 3), _with_revealing_llm(test, 4)
    fused = LambdaMARTReranker(rr.features.with_llm_scores(), SMALL).fit(train)
    labels = test["labels"].tolist()
    assert _recall1_ndcg5(fused.rerank(test), labels)[0] > _recall1_ndcg5(rr.rerank(test), labels)[0] + 0.1
    imp = fused.feature_importances()
    assert set(imp) == set(FEATURE_NAMES) | set(LLM_FEATURE_NAMES) and next(iter(imp)).startswith("llm_")
    fused.save(tmp_path / "fused")
    back = LambdaMARTReranker.load(tmp_path / "fused")
    assert back.features.llm_scores and back.feature_names == fused.feature_names
    np.testing.assert_array_equal(back.score(test), fused.score(test))
