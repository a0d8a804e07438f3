"""Trie-constrained beam search on a tiny random llama with a tiny BPE tokenizer (built offline)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tiny_llm
import torch

from gr2.llm.decoding import SidTrie, constrained_beam_search, encode_prompts
from gr2.llm.vocab import add_sid_tokens, codes_to_ids, sid_special_ids
from gr2.prompts.sids import SID_BEGIN, render_sid

CORPUS = [
    "The user bought: then Next item: for dry skin",
    "shampoo then conditioner then styling gel",
    "0 1 2 3 4 5 6 7 8 9 10 < > _ s a b c d e",
] * 3


def make_tokenizer():
    return tiny_llm.make_tokenizer(CORPUS, vocab_size=300)


def make_model(vocab_size: int):
    model = tiny_llm.make_model(vocab_size, layers=2)
    with torch.no_grad():  # sharper, more varied logits than the default init
        model.get_input_embeddings().weight.normal_(0, 1.0)
    return model


def catalogue(n: int = 60, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` distinct random 4-level SIDs (codebook 8) plus a collision-resolved bucket: ``(1,2,3,4)``
    extended to 5 levels by two items (cold-start case: a 4-level SID that is a prefix of 5-level ones)."""
    rng = np.random.default_rng(seed)
    allc = [c for c in itertools.product(range(8), repeat=4) if c != (1, 2, 3, 4)]
    pick = rng.choice(len(allc), size=n, replace=False)
    return [allc[i] for i in pick] + [(1, 2, 3, 4), (1, 2, 3, 4, 0), (1, 2, 3, 4, 1)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: many torch threads on a shared 2-core machine cost ~50x in contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(one_thread):
    tok = make_tokenizer()
    model = make_model(len(tok))
    add_sid_tokens(model, tok, levels=5, codebook_size=8)
    codes = catalogue()
    trie = SidTrie.from_codes(codes, tok)
    return model, tok, codes, trie


def prompt(history: list[int], codes) -> str:
    body = " ".join(render_sid(codes[i], wrap=True) for i in history)
    return f"The user bought: {body}. Next item: {SID_BEGIN}"


PROMPTS_H = [[0, 1, 2], [5], [10, 11, 12, 13, 14, 15], [60, 3]]


def brute_force(model, tok, trie, text: str) -> dict[int, float]:
    """Teacher-forced log-probability of every item's full path (codes + end) after the prompt."""
    (pids,) = encode_prompts(tok, [text], trie.begin_id)
    out = {}
    items = trie.item_ids
    seqs = [pids + trie.path(i) for i in items]
    T = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), T), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):  # right padding: positions are unaffected
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    for r, (item, s) in enumerate(zip(items, seqs)):
        lp = sum(float(logp[r, t - 1, s[t]]) for t in range(len(pids), len(s)))
        out[item] = lp
    return out


# --------------------------------------------------------------------------------------------------
def test_trie_reaches_every_sid_and_nothing_else(setup):
    _, tok, codes, trie = setup
    begin, end = sid_special_ids(tok)
    valid = {tuple(codes_to_ids(tok, c)[1:]) for c in codes}  # code tokens + end
    found = set()

    def walk(prefix):
        nxt = trie.allowed_next(prefix)
        if not nxt:
            found.add(tuple(prefix))
            return
        assert nxt == sorted(set(nxt))
        for t in nxt:
            walk(prefix + [t])

    walk([])
    assert found == valid and len(trie) == len(codes)
    for i, c in enumerate(codes):
        path = codes_to_ids(tok, c)
        assert trie.item_of(path) == i  # a leading <|sid_begin|> is accepted
        assert trie.path(i) == path[1:]
    # the 4-level SID that is a prefix of two 5-level ones: end or the fifth level may follow
    p = codes_to_ids(tok, (1, 2, 3, 4), wrap=False)
    assert set(trie.allowed_next(p)) == {end, *codes_to_ids(tok, (1, 2, 3, 4, 0), wrap=False)[-1:],
                                         *codes_to_ids(tok, (1, 2, 3, 4, 1), wrap=False)[-1:]}
    assert trie.allowed_next([begin]) == trie.allowed_next([])
    assert trie.allowed_next([end]) == [] and trie.item_of(p) is None  # not complete without end
    assert trie.depth == 6


def test_trie_rejects_duplicates_and_ambiguous_prefixes():
    with pytest.raises(ValueError, match="same SID"):
        SidTrie([[1, 2], [1, 2]], end_id=9)
    with pytest.raises(ValueError, match="prefix"):
        SidTrie([[1, 2], [1, 2, 3]])  # no end token: ambiguous
    with pytest.raises(ValueError, match="prefix"):
        SidTrie([[1, 2, 3], [1, 2]])
    trie = SidTrie([[1, 2], [1, 2, 3]], end_id=9)
    assert trie.allowed_next([1, 2]) == [3, 9] and trie.item_of([1, 2, 9]) == 0 and trie.item_of([1, 2, 3, 9]) == 1


def test_exhaustive_beam_equals_brute_force(setup):
    model, tok, codes, trie = setup
    prompts = [prompt(h, codes) for h in PROMPTS_H]
    res = constrained_beam_search(model, tok, prompts, trie, num_beams=len(codes), num_return=10, batch_size=4)
    for text, row in zip(prompts, res):
        bf = brute_force(model, tok, trie, text)
        best = sorted(bf, key=lambda i: -bf[i])[:10]
        assert [i for i, _ in row] == best
        for i, lp in row:
            assert lp == pytest.approx(bf[i], abs=1e-4)


def test_beam_returns_valid_distinct_items_and_batching_is_invariant(setup):
    model, tok, codes, trie = setup
    prompts = [prompt(h, codes) for h in PROMPTS_H]
    a = constrained_beam_search(model, tok, prompts, trie, num_beams=10, num_return=10, batch_size=1)
    b = constrained_beam_search(model, tok, prompts, trie, num_beams=10, num_return=10, batch_size=3)
    c = constrained_beam_search(model, tok, prompts, trie, num_beams=10, num_return=5, batch_size=4)
    for text, ra, rb, rc in zip(prompts, a, b, c):
        bf = brute_force(model, tok, trie, text)
        items = [i for i, _ in ra]
        assert len(items) == 10 and len(set(items)) == 10
        assert all(0 <= i < len(codes) for i in items)
        scores = [s for _, s in ra]
        assert scores == sorted(scores, reverse=True)
        for i, s in ra:  # scores are exact SID log-probabilities
            assert s == pytest.approx(bf[i], abs=1e-4)
        assert [i for i, _ in rb] == items
        assert np.allclose([s for _, s in rb], scores, atol=1e-4)
        assert len(rc) == 5
    # prompt without a trailing <|sid_begin|>: it is appended
    d = constrained_beam_search(model, tok, [prompts[0][: -len(SID_BEGIN)]], trie, num_beams=10)
    assert [i for i, _ in d[0]] == [i for i, _ in a[0]]
    # small catalogue: everything, once each
    small = SidTrie.from_codes(codes[:3], tok)
    (row,) = constrained_beam_search(model, tok, prompts[:1], small, num_beams=10)
    assert sorted(i for i, _ in row) == [0, 1, 2]
    with pytest.raises(ValueError):
        constrained_beam_search(model, tok, prompts, trie, num_beams=5, num_return=10)


def test_generation_config_is_ignored(setup):
    model, tok, codes, trie = setup
    prompts = [prompt(h, codes) for h in PROMPTS_H[:2]]
    ref = constrained_beam_search(model, tok, prompts, trie, num_beams=8)
    gc = model.generation_config
    saved = gc.to_dict()
    try:
        gc.do_sample, gc.temperature, gc.top_k, gc.top_p, gc.num_beams = True, 2.0, 3, 0.5, 1
        gc.repetition_penalty, gc.length_penalty = 5.0, 3.0
        torch.manual_seed(123)
        a = constrained_beam_search(model, tok, prompts, trie, num_beams=8)
        torch.manual_seed(456)
        b = constrained_beam_search(model, tok, prompts, trie, num_beams=8)
    finally:
        for k, v in saved.items():
            setattr(gc, k, v)
    assert a == b == ref


def test_exclude_seen(setup):
    model, tok, codes, trie = setup
    text = prompt([0, 1], codes)
    (full,) = constrained_beam_search(model, tok, [text], trie, num_beams=len(codes), num_return=10)
    top = [i for i, _ in full]
    excluded = top[:3] + [61]  # includes a 5-level item
    (res,) = constrained_beam_search(model, tok, [text], trie, num_beams=len(codes), num_return=7,
                                     exclude=[excluded])
    assert [i for i, _ in res] == [i for i in top if i not in excluded][:7]
    # exclude a whole sub-tree but one item: the remaining item is still reachable
    sub = [i for i, c in enumerate(codes) if c[:4] == (1, 2, 3, 4)]
    (res,) = constrained_beam_search(model, tok, [text], trie, num_beams=len(codes), num_return=len(codes),
                                     exclude=[sub[:2]])
    got = {i for i, _ in res}
    assert not got & set(sub[:2]) and sub[2] in got and len(got) == len(codes) - 2
