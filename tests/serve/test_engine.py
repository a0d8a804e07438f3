"""The serving engine alone: generation with the cached prefix equals plain generation."""

from __future__ import annotations

import time

import torch

from gr2.llm.scoring import PrefixCache, ScoreInput, score_direct
from gr2.serve.engine import generate_answers


def _sharp_model():
    """A tiny llama with large weights: its greedy output varies with the input (the default
    initialisation answers every prompt with the same token, which would prove nothing)."""
    import tiny_llm

    tok = tiny_llm.make_tokenizer(["hello world, the user bought items", "recommendations explanation"], 300)
    model = tiny_llm.make_model(len(tok), layers=2)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20)
    return model, tok


def _prompts(n_prefix: int, lengths: tuple[int, ...]) -> tuple[list[int], list[list[int]]]:
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(1, 250, (n_prefix,), generator=g).tolist()
    return prefix, [prefix + torch.randint(1, 250, (n,), generator=g).tolist() for n in lengths]


def test_generation_with_the_cached_prefix_equals_plain_generation() -> None:
    model, tok = _sharp_model()
    prefix, prompts = _prompts(40, (5, 17, 9))
    far = [time.monotonic() + 100] * len(prompts)
    alone = [generate_answers(model, tok, [p], far[:1], 8)[0] for p in prompts]
    assert len(set(alone)) == len(alone)  # distinct answers: the comparison means something
    assert generate_answers(model, tok, prompts, far, 8) == alone
    assert generate_answers(model, tok, prompts, far, 8, PrefixCache(model, prefix)) == alone
    # a prompt that does not start with the prefix: the batch is computed without it
    other = [p[:] for p in prompts]
    other[1][0] = (other[1][0] + 1) % 250
    assert generate_answers(model, tok, other, far, 8, PrefixCache(model, prefix))[0] == alone[0]


def test_shared_sid_prefixes_and_prefix_sids_are_scored_exactly() -> None:
    """Candidates sharing leading tokens share trie nodes; one SID may be a prefix of another (the
    separator keeps both paths distinct)."""
    model, _ = _sharp_model()
    prefix, (ids,) = _prompts(30, (6,))
    sep = 7
    paths = [[201, 202, 203, sep], [201, 202, 204, sep], [201, 202, sep], [205, 206, 203, sep]]
    with torch.no_grad():
        ref = []
        for p in paths:
            lp = torch.log_softmax(model(input_ids=torch.tensor([ids + p])).logits[0].float(), -1)
            ref.append(sum(float(lp[len(ids) - 1 + i, t]) for i, t in enumerate(p)))
    for cache in (None, PrefixCache(model, prefix)):
        [got] = score_direct(model, [ScoreInput(ids, paths)], cache)
        assert torch.allclose(torch.tensor(got), torch.tensor(ref), atol=1e-3)
