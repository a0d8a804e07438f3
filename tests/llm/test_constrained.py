"""Constrained ranking answers (gr2.llm.constrained): whatever the logits, a sampled answer is a valid
permutation of its own row's candidates that parse_output accepts — reasoning-free and reasoning,
SIDs as BPE text or as SID tokens, wrapped or not, at the shortest budget that fits."""

from __future__ import annotations

import pytest
import tiny_llm
import torch
from rl.conftest import make_tokenizer as prompt_tokenizer
from rl.conftest import sid_of
from transformers import LogitsProcessorList

from gr2.llm.constrained import AnswerFrame, RankingConstraint
from gr2.llm.vocab import add_sid_tokens
from gr2.prompts.parse import parse_output
from gr2.prompts.render import assistant_text

#: Two rows with different candidates; the second holds an SID that is a prefix of another one.
ROWS = [[sid_of(i) for i in (2, 3, 4, 5)],
        ["<s_a_1><s_b_2><s_c_3>", "<s_a_1><s_b_2><s_c_3><s_d_0>", "<s_a_1><s_b_0><s_c_3>", "<s_a_0><s_b_2><s_c_1>"]]


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """SIDs are plain BPE text: no SID tokens in the vocabulary."""
    return prompt_tokenizer()


@pytest.fixture(scope="module")
def sid_tokenizer():
    """A tokenizer with the SID vocabulary (and its model, resized to it)."""
    tok = tiny_llm.make_tokenizer(['{"explanation": "the user likes shampoo.", "recommendations": []}'] * 3,
                                  vocab_size=300)
    model = tiny_llm.make_model(len(tok))
    add_sid_tokens(model, tok, levels=4, codebook_size=8)
    return tok, model


def sample_random(constraint: RankingConstraint, rows, max_new_tokens: int, seed: int) -> list[str]:
    """Answers sampled from random logits through the processor (a fake model), decoded as TRL does."""
    gen = torch.Generator().manual_seed(seed)
    processor = constraint.processor(rows, max_new_tokens)
    ids = torch.zeros((len(rows), 3), dtype=torch.long)  # a 3-token "prompt"
    vocab = len(constraint.tokenizer) + 5  # a model may have more embedding rows than the tokenizer has tokens
    for _ in range(max_new_tokens):
        scores = processor(ids, torch.randn((len(rows), vocab), generator=gen) * 8)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
        if bool((ids[:, 3:] == constraint.eos_token_id).any(dim=1).all()):
            break
    out = []
    for row in ids[:, 3:].tolist():
        end = row.index(constraint.eos_token_id)  # every answer ends within the budget
        out.append(constraint.tokenizer.decode(row[:end + 1], skip_special_tokens=True))
    return out


def assert_valid(texts: list[str], rows, reasoning: bool) -> list[list[int]]:
    orders = []
    for text, sids in zip(texts, rows):
        parsed = parse_output(text, sids, require_explanation=reasoning)
        assert parsed.status == "ok", (parsed.status, text)
        assert sorted(parsed.order) == list(range(len(sids)))
        orders.append(parsed.order)
    return orders


def test_the_frame_is_the_sft_target():
    assert AnswerFrame.of(False) == AnswerFrame('{"recommendations": ["', "", '", "', '"]}')
    assert AnswerFrame.of(True) == AnswerFrame('{"explanation": "', '", "recommendations": ["', '", "', '"]}')


@pytest.mark.parametrize("sid_wrap", [False, True])
@pytest.mark.parametrize("reasoning", [False, True])
@pytest.mark.parametrize("which", ["bpe", "sid"])
def test_random_logits_always_give_a_valid_permutation(which, reasoning, sid_wrap, bpe_tokenizer, sid_tokenizer):
    tok = bpe_tokenizer if which == "bpe" else sid_tokenizer[0]
    constraint = RankingConstraint(tok, reasoning=reasoning, sid_wrap=sid_wrap)
    rows = [r for r in ROWS for _ in range(4)]  # each list G = 4 times, as TRL lays a batch out
    shortest = max(constraint.min_new_tokens(r) for r in rows)
    orders = set()
    for seed, budget in enumerate([shortest, shortest + 3, shortest + 40]):
        texts = sample_random(constraint, rows, budget, seed)
        orders.update(tuple(o) for o in assert_valid(texts, rows, reasoning))
        if not reasoning:  # the answer is exactly what SFT taught
            for text, sids in zip(texts, rows):
                order = parse_output(text, sids, require_explanation=False).order
                assert text == assistant_text(None, [sids[i] for i in order], reasoning=False, wrap=sid_wrap)
    assert len(orders) > 3  # sampling still chooses the order


def test_generate_with_a_model_and_an_end_of_turn(sid_tokenizer):
    tok, model = sid_tokenizer
    constraint = RankingConstraint(tok, reasoning=True, sid_wrap=True, end_text="<|im_end|>\n<eos>")
    assert tok.decode(constraint.end) == '"]}<|im_end|>\n<eos>'
    tok.padding_side = "left"
    enc = tok(["the user bought shampoo", "recommend"], return_tensors="pt", padding=True)
    budget = constraint.min_new_tokens(ROWS[1]) + 10
    processor = constraint.processor(ROWS, budget)
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, temperature=1.5, top_p=0.9, top_k=0, max_new_tokens=budget,
                         logits_processor=LogitsProcessorList([processor]), pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert_valid(texts, ROWS, reasoning=True)
    assert processor.steps > 0 and all(t.startswith('{"explanation": "') for t in texts)


def test_too_short_a_budget_or_a_wrong_batch_is_refused(bpe_tokenizer):
    constraint = RankingConstraint(bpe_tokenizer, reasoning=False)
    with pytest.raises(ValueError, match="needs at least"):
        constraint.processor(ROWS, constraint.min_new_tokens(ROWS[1]) - 1)
    processor = constraint.processor(ROWS, 200)
    with pytest.raises(ValueError, match="candidate lists"):
        processor(torch.zeros((3, 2), dtype=torch.long), torch.zeros((3, len(bpe_tokenizer))))
    with pytest.raises(ValueError, match="EOS"):
        RankingConstraint(bpe_tokenizer, reasoning=False, end_text="<|im_end|>")
