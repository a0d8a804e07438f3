"""Full-catalogue retrieval metrics and the LLM beam pre-ranker (tiny random llama, tiny tokenizer)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import tiny_llm
import torch

from gr2.llm.decoding import SidTrie, constrained_beam_search
from gr2.llm.retrieval import evaluate_retrieval, retrieval_metrics, sequential_prompt
from gr2.llm.vocab import add_sid_tokens
from gr2.prerank.base import top_k
from gr2.prerank.llm_beam import LLMBeamPreranker
from gr2.prompts.sids import SID_BEGIN, parse_sid


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(one_thread):
    tok = tiny_llm.make_tokenizer(["The user bought: Next item: 0 1 2 3 < > _ s a b c d"] * 3, vocab_size=300)
    model = tiny_llm.make_model(len(tok))
    add_sid_tokens(model, tok, levels=4, codebook_size=4)
    rng = np.random.default_rng(1)
    allc = list(itertools.product(range(4), repeat=4))
    codes = [allc[i] for i in rng.choice(len(allc), size=40, replace=False)]
    return model, tok, codes


def test_retrieval_metrics_hand_made():
    ranked = [[3, 7, 9], [1, 2, 3, 4, 5, 6], [8, 8, 8], [0, 1, 2, 3, 4, 5, 6]]
    targets = [7, 6, 1, 0]
    m = retrieval_metrics(ranked, targets, ks=(1, 5, 10))
    # ranks: 2, 6, miss, 1
    assert m["n"] == 4
    assert m["R@1"] == pytest.approx(1 / 4)
    assert m["R@5"] == pytest.approx(2 / 4)
    assert m["R@10"] == pytest.approx(3 / 4)
    assert m["N@1"] == pytest.approx(1 / 4)
    assert m["N@5"] == pytest.approx((1 / math.log2(3) + 1) / 4)
    assert m["N@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(7) + 1) / 4)
    assert math.isnan(retrieval_metrics([], [], ks=(5,))["R@5"])


def test_sequential_prompt(setup):
    _, _, codes = setup
    text = sequential_prompt([0, 1], codes)
    assert text.startswith("The user bought: <|sid_begin|>") and text.endswith(f"Next item: {SID_BEGIN}")
    first = text.split(" ")[3]
    assert parse_sid(first.rstrip(".")) == codes[0]
    assert sequential_prompt(list(range(30)), codes, max_history=2).count(SID_BEGIN) == 3


def test_evaluate_retrieval_matches_beam_output(setup):
    model, tok, codes = setup
    histories = [[i, (i + 1) % 40, (i + 2) % 40] for i in range(6)]
    trie = SidTrie.from_codes(codes, tok)
    hits = constrained_beam_search(model, tok, [sequential_prompt(h, codes) for h in histories], trie,
                                   num_beams=10, num_return=10, exclude=histories)
    # choose targets: hit at rank 1, hit at rank 7, and misses
    targets = [hits[0][0][0], hits[1][6][0]] + [h[0] for h in histories[2:]]  # history items: never returned
    examples = pd.DataFrame({"history": histories, "target": targets})
    res = evaluate_retrieval(model, tok, pd.DataFrame({"item_id": range(40), "codes": codes}), examples,
                             prompt_fn=sequential_prompt, ks=(5, 10), return_rankings=True)
    assert res["rankings"] == hits
    assert res["n"] == 6 and res["num_beams"] == 10 and res["exclude_seen"] is True
    assert res["R@5"] == pytest.approx(1 / 6) and res["R@10"] == pytest.approx(2 / 6)
    assert res["N@5"] == pytest.approx(1 / 6)
    assert res["N@10"] == pytest.approx((1 + 1 / math.log2(8)) / 6)
    sub = evaluate_retrieval(model, tok, codes, list(zip(histories, targets)), sample=3, seed=0)
    assert sub["n"] == 3 and 0 <= sub["R@10"] <= 1


def test_llm_beam_preranker_top_k(setup):
    model, tok, codes = setup
    pr = LLMBeamPreranker(sids=codes, model=model, tokenizer=tok, prompt_fn=sequential_prompt, num_beams=10)
    with pytest.raises(RuntimeError):
        pr.score([[0]])
    pr.fit([[0, 1, 2]], n_items=40)
    histories = [[0, 1, 2], [5, 6], [7]]
    scores = pr.score(histories)
    assert scores.shape == (3, 40) and scores.dtype == np.float32
    assert (np.isfinite(scores).sum(axis=1) == 10).all()
    ids, vals = top_k(pr, histories, k=10, progress=False)
    assert ids.shape == (3, 10) and vals.shape == (3, 10) and np.isfinite(vals).all()
    for h, row, retrieved in zip(histories, ids, pr.retrieve(histories)):
        assert list(row) == [i for i, _ in retrieved]  # beam order
        assert not set(h) & set(row.tolist())
    with pytest.raises(ValueError):
        pr.fit([], n_items=41)


def test_default_prompt_matches_midtraining(setup):
    from gr2.llm.retrieval import default_prompt_fn
    from gr2.midtrain.config import MidtrainConfig
    from gr2.prompts.sequential import sequential_prompt as task_prompt
    from gr2.prompts.sids import render_sid

    _, _, codes = setup
    fn = default_prompt_fn(max_history=2)
    text = fn([0, 1, 2], codes)
    assert text == task_prompt([render_sid(codes[i], wrap=True) for i in (1, 2)])
    assert default_prompt_fn()(list(range(30)), codes).count(SID_BEGIN) == MidtrainConfig().max_history
