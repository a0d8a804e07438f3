"""Pre-rankers on tiny synthetic data: item i is followed by item i+1 (mod N_ITEMS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gr2.prerank import (
    CooccurrencePreranker,
    PopularityPreranker,
    Preranker,
    SASRecConfig,
    SASRecPreranker,
    full_catalogue_metrics,
    make_preranker,
    top_k,
)

N_ITEMS = 50
TINY = dict(hidden=32, blocks=1, heads=1, dropout=0.1, max_len=20, lr=5e-3, batch_size=64,
            max_epochs=20, patience=2, eval_every=4, seed=0, progress=False, num_threads=1)


def _sequences(n_users: int = 200, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # starts skewed towards low ids, so that popularity is informative but wrong about the next item
    starts = np.minimum(rng.geometric(0.08, size=n_users) - 1, N_ITEMS - 1)
    lengths = rng.integers(5, 12, size=n_users)
    return [[int((s + j) % N_ITEMS) for j in range(n)] for s, n in zip(starts, lengths)]


@pytest.fixture(scope="module")
def split():
    seqs = _sequences()
    train = [s[:-2] for s in seqs]
    valid = [(s[:-2], s[-2]) for s in seqs]
    test_hist = [s[:-1] for s in seqs]
    test_tgt = [s[-1] for s in seqs]
    return train, valid, test_hist, test_tgt


@pytest.fixture(scope="module")
def fitted(split):
    train, valid, _, _ = split
    models = {
        "popularity": PopularityPreranker(),
        "cooc": CooccurrencePreranker(),
        "sasrec": SASRecPreranker(SASRecConfig(**TINY)),
    }
    for m in models.values():
        m.fit(train, N_ITEMS, valid=valid)
    return models


class FixedScores(Preranker):
    """Every user gets the same score vector (for hand-checked cases)."""

    def __init__(self, scores):
        self.vec = np.asarray(scores, dtype=np.float32)
        self.n_items = len(self.vec)

    def fit(self, train_sequences, n_items, valid=None):
        pass

    def score(self, histories):
        return np.tile(self.vec, (len(histories), 1))


# ---------------------------------------------------------------------------------------------- learning
def test_score_shape_and_dtype(fitted, split):
    hist = split[2][:7]
    for m in fitted.values():
        s = m.score(hist)
        assert s.shape == (7, N_ITEMS) and s.dtype == np.float32
        assert np.isfinite(s).all()


def test_cooc_and_sasrec_learn_pattern_popularity_does_not(fitted, split):
    _, _, hist, tgt = split
    res = {n: full_catalogue_metrics(m, hist, tgt, ks=(1, 10)) for n, m in fitted.items()}
    assert res["cooc"]["R@1"] == 1.0
    assert res["sasrec"]["R@1"] >= 0.9
    assert res["popularity"]["R@1"] < 0.3
    assert res["sasrec"]["N@10"] > res["popularity"]["N@10"] + 0.5


def test_sasrec_early_stopping_records_history(fitted):
    m = fitted["sasrec"]
    evals = [h for h in m.history if "val_N@10" in h]
    assert evals and m.best_epoch in [h["epoch"] for h in evals]
    best = max(h["val_N@10"] for h in evals)
    assert [h["val_N@10"] for h in evals if h["epoch"] == m.best_epoch][0] == best


# ---------------------------------------------------------------------------------------------- top_k
@pytest.mark.parametrize("name", ["popularity", "cooc", "sasrec"])
def test_top_k_excludes_seen_and_is_best_first(fitted, split, name):
    hist = split[2]
    ids, vals = top_k(fitted[name], hist, k=10, batch_size=64, progress=False)
    assert ids.shape == (len(hist), 10) and ids.dtype == np.int64 and vals.dtype == np.float32
    for h, row, v in zip(hist, ids, vals):
        assert not set(h) & set(row.tolist())
        assert len(set(row.tolist())) == 10
        assert np.all(np.diff(v) <= 0)
        # equal scores appear in increasing item id order
        for a in range(9):
            if v[a] == v[a + 1]:
                assert row[a] < row[a + 1]
    # the scores returned are the pre-ranker's own scores
    full = fitted[name].score(hist[:5])
    np.testing.assert_array_equal(np.take_along_axis(full, ids[:5], axis=1), vals[:5])


def test_top_k_ties_lowest_id_first_even_across_the_cut():
    pr = FixedScores([5, 1, 1, 1, 1, 3, 1, 1])
    ids, vals = top_k(pr, [[], [0], [1, 5]], k=3, progress=False)
    assert ids.tolist() == [[0, 5, 1], [5, 1, 2], [0, 2, 3]]
    assert vals.tolist() == [[5, 3, 1], [3, 1, 1], [5, 1, 1]]
    const = FixedScores(np.zeros(20))
    ids, _ = top_k(const, [[0, 2, 4]] * 3, k=5, batch_size=2, progress=False)
    assert ids.tolist() == [[1, 3, 5, 6, 7]] * 3


def test_top_k_without_exclusion_may_return_seen():
    pr = FixedScores([3, 2, 1, 0])
    ids, _ = top_k(pr, [[0]], k=2, exclude_seen=False, progress=False)
    assert ids.tolist() == [[0, 1]]
    ids, _ = top_k(pr, [[0]], k=2, exclude_seen=True, progress=False)
    assert ids.tolist() == [[1, 2]]


# ---------------------------------------------------------------------------------------------- metrics
def test_full_catalogue_metrics_hand_checked():
    pr = FixedScores([6, 5, 4, 3, 2, 1])  # item 0 best
    hist = [[0], [], [1, 2]]
    tgt = [2, 5, 0]
    # filtered ranks: user0 → order 1,2,.. so item 2 at rank 2; user1 → item 5 at rank 6; user2 → rank 1
    m = full_catalogue_metrics(pr, hist, tgt, ks=(1, 3, 5))
    assert m["R@1"] == pytest.approx(1 / 3)
    assert m["R@3"] == pytest.approx(2 / 3)
    assert m["R@5"] == pytest.approx(2 / 3)
    assert m["N@1"] == pytest.approx(1 / 3)
    assert m["N@3"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert m["n"] == 3
    # unfiltered: user0's target is at rank 3
    m = full_catalogue_metrics(pr, hist, tgt, ks=(3,), exclude_seen=False)
    assert m["R@3"] == pytest.approx(2 / 3)
    assert m["N@3"] == pytest.approx((1 / math.log2(4) + 1) / 3)


def test_popularity_counts_and_cooc_transitions():
    train = [[0, 1, 2], [0, 1], [3, 1]]
    pop = make_preranker("popularity")
    pop.fit(train, 5)
    assert pop.score([[4]])[0].tolist() == [2, 3, 1, 1, 0]
    co = make_preranker("cooc", m=2, decay=0.5)
    co.fit(train, 5)
    s = co.score([[0], [0, 1], []])
    # transitions 0→1 (x2), 1→2, 3→1; popularity adds < 1e-3
    assert s[0].argmax() == 1 and 2.0 <= s[0, 1] < 2.001
    assert s[1, 2] == pytest.approx(1.0, abs=1e-3) and s[1, 1] == pytest.approx(1.0, abs=1e-3)
    assert s[1, 1] > s[1, 2]  # tie on transitions broken by popularity
    assert s[2].argmax() == 1 and s[2].max() < 1e-3  # empty history: popularity only


# ---------------------------------------------------------------------------------------------- sasrec
def test_sasrec_is_deterministic(split):
    train, valid, hist, _ = split
    cfg = SASRecConfig(**{**TINY, "max_epochs": 3, "eval_every": 1})
    a, b = SASRecPreranker(cfg), SASRecPreranker(cfg)
    a.fit(train, N_ITEMS, valid)
    b.fit(train, N_ITEMS, valid)
    np.testing.assert_array_equal(a.score(hist), b.score(hist))
    c = SASRecPreranker(cfg, seed=1)
    c.fit(train, N_ITEMS, valid)
    assert not np.array_equal(a.score(hist), c.score(hist))


def test_sasrec_save_load_round_trip(fitted, split, tmp_path):
    m = fitted["sasrec"]
    m.save(tmp_path / "sasrec")
    loaded = SASRecPreranker.load(tmp_path / "sasrec")
    assert loaded.config == m.config and loaded.n_items == N_ITEMS and loaded.best_epoch == m.best_epoch
    hist = split[2]
    np.testing.assert_array_equal(loaded.score(hist), m.score(hist))


def test_sasrec_handles_long_and_empty_histories(fitted):
    m = fitted["sasrec"]
    long = [list(range(N_ITEMS)) * 3]
    s = m.score(long + [[]] + [[7]])
    assert s.shape == (3, N_ITEMS) and np.isfinite(s).all()
    # only the last max_len items are read
    np.testing.assert_allclose(m.score([long[0][-TINY["max_len"]:]]), s[:1], rtol=1e-5, atol=1e-5)


def test_make_preranker_registry():
    assert isinstance(make_preranker("popularity"), PopularityPreranker)
    assert isinstance(make_preranker("cooc", m=2), CooccurrencePreranker)
    s = make_preranker("sasrec", hidden=16, dropout=0.3)
    assert isinstance(s, SASRecPreranker) and s.config.hidden == 16 and s.config.dropout == 0.3
    s = make_preranker("SASRec", config=SASRecConfig(blocks=3))
    assert s.config.blocks == 3
    with pytest.raises(KeyError):
        make_preranker("nope")


def test_fit_rejects_out_of_range_ids():
    with pytest.raises(ValueError):
        PopularityPreranker().fit([[0, 5]], 5)


def test_full_softmax_loss_matches_cross_entropy():
    import torch

    from gr2.prerank.sasrec import full_softmax_loss

    g = torch.Generator().manual_seed(0)
    h0, E0 = torch.randn(37, 8, generator=g), torch.randn(23, 8, generator=g)
    y = torch.randint(0, 23, (37,), generator=g)
    h1, E1 = h0.clone().requires_grad_(), E0.clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(h1 @ E1.T, y)
    ref.backward()
    h2, E2 = h0.clone().requires_grad_(), E0.clone().requires_grad_()
    got = full_softmax_loss(h2, E2, y, chunk=10)
    got.backward()
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(h2.grad, h1.grad)
    torch.testing.assert_close(E2.grad, E1.grad)


def test_sasrec_sampled_softmax_option_learns(split):
    train, valid, hist, tgt = split
    m = SASRecPreranker(SASRecConfig(**{**TINY, "n_negatives": 10}))
    m.fit(train, N_ITEMS, valid)
    assert full_catalogue_metrics(m, hist, tgt, ks=(10,))["R@10"] > 0.8
