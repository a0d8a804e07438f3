"""Re-rank candidate lists with an LLM, the two ways the project does it, and their one result type
(:class:`RerankOutput`) that the eval, the learning curve and the benchmarks share:

* **generate → parse** (:func:`rerank_lists`): prompts from :func:`gr2.prompts.render.build_messages`
  (candidates shown shuffled by default, keyed by ``example_id``, so a model that copies positions is
  exposed: docs/method.md §5), answers from :func:`gr2.llm.generate.generate_chat` (every decoding parameter
  explicit), read back by the prompt's own parser, which maps SIDs or candidate numbers to pre-rank
  indices and repairs invalid answers (unlisted candidates appended in pre-rank order);
* **direct** (:func:`rerank_lists_direct`, reasoning-free, no text generated): each candidate is scored
  by the log-probability that the model writes its SID as the *first* recommendation after the
  ranking-only prompt and the answer's opening ``{"recommendations": ["``, all K candidates in one
  forward pass (:func:`gr2.llm.scoring.score_direct`, the scoring core that also serves
  ``mode="direct"``), and the list is sorted by that score. The answer is therefore always a valid
  permutation; what it measures is whether the model puts the right item first — the paper's
  reasoning-free variant (docs/method.md §9). The tokens every prompt of the batch starts with (system
  message, template) are computed once (:class:`gr2.llm.scoring.PrefixCache`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from gr2.llm.generate import GenerationParams, generate_chat
from gr2.llm.scoring import (
    DirectEncoder,
    PositionPrior,
    PrefixCache,
    common_prefix,
    direct_ranking,
    score_direct,
)
from gr2.prompts.parse import ParseResult
from gr2.prompts.render import ItemText, PromptConfig, build_messages

__all__ = ["RerankOutput", "rerank_lists", "rerank_lists_direct"]


@dataclass
class RerankOutput:
    """One list's answer: the raw text, its parse (``result.status``, ``result.order`` when valid,
    ``result.repaired`` always a permutation of pre-rank indices, ``result.presented``), its
    length in tokens of the model's tokenizer and, in direct mode, each candidate's score (pre-rank
    order; :func:`rerank_lists_direct`)."""

    example_id: str
    text: str
    result: ParseResult
    n_tokens: int
    scores: list[float] | None = None


def rerank_lists(
    model: Any,
    tokenizer: Any,
    lists_df: pd.DataFrame,
    items: Mapping[int, ItemText],
    prompt_cfg: PromptConfig | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> list[RerankOutput]:
    """Re-rank every list of ``lists_df`` (columns ``example_id``, ``history``, ``candidates``) with
    ``model``; the shuffled presentation is keyed by ``example_id``. Outputs are in row order."""
    cfg = prompt_cfg or PromptConfig()
    ids = [str(e) for e in lists_df["example_id"]]
    prompts = [build_messages(list(h), list(c), cfg, rng_key=e, items=items)
               for e, h, c in zip(ids, lists_df["history"], lists_df["candidates"])]
    texts = generate_chat(model, tokenizer, [p.messages for p in prompts], params, batch_size=batch_size,
                          progress=progress)
    return [RerankOutput(e, t, p.parse(t), len(tokenizer(t, add_special_tokens=False)["input_ids"]))
            for e, p, t in zip(ids, prompts, texts)]


def rerank_lists_direct(
    model,
    tokenizer,
    lists_df: pd.DataFrame,
    items: Mapping[int, ItemText],
    prompt_cfg: PromptConfig | None = None,
    batch_size: int = 8,
    progress: bool = False,
    prior: PositionPrior | None = None,
) -> list[RerankOutput]:
    """Direct-mode orders for every list of ``lists_df`` (columns ``example_id``, ``history``,
    ``candidates``), in row order. ``text`` of each output is the ranking as the JSON answer the
    model would have written; ``n_tokens`` is 0 (nothing is generated); ``scores`` are the candidates'
    log-probabilities in pre-rank order, the model's own (the eval's fusion row uses them as features).
    A model trained with a position ``prior`` (:meth:`PositionPrior.load` of its folder) ranks by
    them plus the prior when the candidates are shown in the pre-ranker's order; shown shuffled, the
    order says nothing and the model's own scores rank (the shuffled-order control measures the
    model's part alone)."""
    cfg = dataclasses.replace(prompt_cfg or PromptConfig(), reasoning=False)
    ids = [str(e) for e in lists_df["example_id"]]
    prompts = [build_messages(list(h), list(c), cfg, rng_key=e, items=items)
               for e, h, c in zip(ids, lists_df["history"], lists_df["candidates"])]
    encoder = DirectEncoder(tokenizer, cfg.sid_wrap)
    inputs = [encoder.encode(p.messages, p.candidate_sids) for p in prompts]
    shared = common_prefix([x.ids for x in inputs])
    prefix = PrefixCache(model, shared) if shared else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores: list[list[float]] = []
    bar = tqdm(total=len(inputs), desc="direct scoring", unit="list", disable=not progress)
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        scores.extend(score_direct(model, chunk, prefix, int(pad or 0)))
        bar.update(len(chunk))
    bar.close()

    outputs = []
    for e, p, s in zip(ids, prompts, scores):
        _, order = direct_ranking(s, p.presented, cfg.order, prior)
        ranking = [p.candidate_sids[i] for i in order]
        result = ParseResult(status="ok", explanation=None, raw_ranking=ranking, order=order,
                             repaired=list(order), presented=list(p.presented))
        outputs.append(RerankOutput(e, json.dumps({"recommendations": ranking}), result, 0, [float(x) for x in s]))
    return outputs
