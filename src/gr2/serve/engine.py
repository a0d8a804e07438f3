"""Generation for serving (reasoning mode): greedy with every decoding parameter explicit
(:func:`gr2.llm.generate.generation_config`, the project's one policy) and a per-row stopping
criterion on the requests' deadlines, so a batch never keeps decoding for clients that have already
been answered with the fallback order. Direct scoring lives in :mod:`gr2.llm.scoring`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from gr2.llm.scoring import PrefixCache

__all__ = ["generate_answers"]


def _deadline_criteria(deadlines: Sequence[float]) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Deadlines(StoppingCriteria):
        """Stops each row once its request's deadline (``time.monotonic()``) has passed."""

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            now = time.monotonic()
            return torch.tensor([now >= d for d in deadlines], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Deadlines()])


@torch.no_grad()
def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[list[int]], deadlines: Sequence[float],
                     max_new_tokens: int, prefix: PrefixCache | None = None) -> list[str]:
    """Greedy continuations of tokenised ``prompts`` (one batch), special tokens stripped; a row
    stops at EOS, ``max_new_tokens`` or its deadline, whichever comes first.

    With a ``prefix`` that every prompt starts with, its cached keys/values are reused: each row is
    ``prefix + padding + suffix`` (the padding sits *between* the shared prefix and the row's own
    suffix, masked out; positions come from the attention mask, so every real token keeps its
    position) and only the suffixes are computed.
    """
    from gr2.llm.generate import (
        GenerationParams,
        generation_config,
    )

    if not prompts:
        return []
    if prefix is not None and not all(prefix.matches(p) for p in prompts):
        prefix = None
    P = len(prefix) if prefix is not None else 0
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), int(pad), dtype=torch.long)
    att = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :P] = torch.tensor(p[:P], dtype=torch.long)
        ids[i, T - len(p) + P:] = torch.tensor(p[P:], dtype=torch.long)
        att[i, :P] = 1
        att[i, T - len(p) + P:] = 1
    config = generation_config(GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=None),
                                tokenizer)
    kw: dict[str, Any] = {"past_key_values": prefix.cache(len(prompts))} if prefix is not None else {}
    gen = model.generate(input_ids=ids.to(dev), attention_mask=att.to(dev), generation_config=config,
                         stopping_criteria=_deadline_criteria(deadlines), **kw)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in gen[:, T:]]
