"""Rows sampled from their own keyed streams (gr2.llm.seeded): a row's completion does not depend on
the batch it is generated in, the draws follow the warped softmax, and a different key samples
something else."""

from __future__ import annotations

import pytest
import tiny_llm
import torch
from transformers import GenerationConfig, LogitsProcessorList

from gr2.llm.seeded import SeededSampler, key_seed

VOCAB = 5


def config(**kw) -> GenerationConfig:
    return GenerationConfig(do_sample=True, **{"top_k": 0, **kw})


def draws(scores: torch.Tensor, n: int, cfg: GenerationConfig, key=(0,)) -> torch.Tensor:
    """``n`` steps of one row's sampler on fixed ``scores``: the token chosen at each."""
    sampler = SeededSampler(cfg, key, first_row=0, total_rows=1)
    ids = torch.zeros((1, 1), dtype=torch.long)
    out = [sampler(ids, scores.clone()).argmax(dim=-1) for _ in range(n)]
    return torch.cat(out)


def test_draws_follow_the_softmax_of_the_warped_scores():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]])
    n = 20_000
    for cfg, logits in ((config(), scores), (config(temperature=2.0), scores / 2)):
        counts = torch.bincount(draws(scores, n, cfg), minlength=VOCAB).float()
        p = torch.softmax(logits[0], dim=-1)
        sigma = (n * p * (1 - p)).sqrt()
        assert ((counts - n * p).abs() <= 4 * sigma + 1).all(), (counts, n * p)


def test_top_k_top_p_and_min_p_leave_only_their_tokens():
    scores = torch.tensor([[2.0, 1.9, 0.0, -1.0, -2.0]])
    assert set(draws(scores, 500, config(top_k=1)).tolist()) == {0}
    assert set(draws(scores, 500, config(top_p=0.6)).tolist()) == {0, 1}
    assert set(draws(scores, 500, config(min_p=0.5)).tolist()) == {0, 1}


def test_the_result_allows_one_token_so_later_warpers_keep_it():
    sampler = SeededSampler(config(), (1,), first_row=0, total_rows=3)
    out = sampler(torch.zeros((3, 1), dtype=torch.long), torch.randn(3, VOCAB))
    assert torch.isfinite(out).sum(dim=1).tolist() == [1, 1, 1]
    assert sampler.steps == 1


def test_a_row_samples_the_same_whatever_slice_of_the_batch_it_is_in():
    torch.manual_seed(0)
    scores = torch.randn(4, 50)
    whole = SeededSampler(config(), (7, 3), first_row=0, total_rows=4)
    halves = [SeededSampler(config(), (7, 3), first_row=r, total_rows=4) for r in (0, 2)]
    ids = torch.zeros((4, 1), dtype=torch.long)
    for _ in range(20):
        want = whole(ids, scores).argmax(dim=-1)
        got = torch.cat([h(ids[r:r + 2], scores[r:r + 2]).argmax(dim=-1) for h, r in zip(halves, (0, 2))])
        assert got.tolist() == want.tolist()
    other = SeededSampler(config(), (7, 4), first_row=0, total_rows=4)
    assert any(bool((other(ids, scores).argmax(-1) != whole(ids, scores).argmax(-1)).any()) for _ in range(10))


def test_a_tiny_model_generates_the_same_rows_in_one_batch_or_two():
    """Rows of different prompt lengths (left padding differs between the batches) through a real
    ``generate``: each row's completion is the same in the whole batch and in its half."""
    tok = tiny_llm.make_tokenizer(["a b c d e f g h"] * 3, vocab_size=280)
    tok.padding_side = "left"
    model = tiny_llm.make_model(len(tok))
    prompts = ["a b", "c d e f g", "h", "a c e g"]
    cfg = config(max_new_tokens=12, pad_token_id=tok.pad_token_id, eos_token_id=None, temperature=0.9)

    def generate(rows: list[str], first: int) -> list[list[int]]:
        enc = tok(rows, return_tensors="pt", padding=True)
        torch.manual_seed(first)  # the global generator differs between the calls: it must not matter
        sampler = SeededSampler(cfg, (0, 1, 0, 0), first_row=first, total_rows=len(prompts))
        out = model.generate(**enc, generation_config=cfg, logits_processor=LogitsProcessorList([sampler]))
        return out[:, enc["input_ids"].shape[1]:].tolist()

    assert generate(prompts[:2], 0) + generate(prompts[2:], 2) == generate(prompts, 0)


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="do_sample"):
        SeededSampler(GenerationConfig(do_sample=False), (0,), 0, 1)
    with pytest.raises(ValueError, match="typical_p"):
        SeededSampler(config(typical_p=0.5), (0,), 0, 1)
    sampler = SeededSampler(config(), (0,), first_row=1, total_rows=2)
    with pytest.raises(ValueError, match="another batch"):
        sampler(torch.zeros((2, 1), dtype=torch.long), torch.zeros(2, VOCAB))


def test_key_seeds_differ_and_repeat():
    assert key_seed((1, 2, 3)) == key_seed([1, 2, 3])
    assert len({key_seed((0, s, m, r)) for s in range(10) for m in range(3) for r in range(4)}) == 120
