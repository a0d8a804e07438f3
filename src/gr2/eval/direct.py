"""Direct (reasoning-free) re-ranking of candidate lists: no text is generated.

Each candidate is scored by the log-probability that the model writes its SID as the *first*
recommendation after the ranking-only prompt and the answer's opening ``{"recommendations": ["``,
all K candidates in one forward pass (:func:`gr2.llm.scoring.score_direct`, the scoring core that serves
``mode="direct"``), and the list is sorted by that score. The answer is therefore always a valid
permutation: the valid rate of a direct row is 100% by construction, and what it measures is
whether the model puts the right item first — the paper's reasoning-free variant (method.md §9).

Prompts are rendered exactly as for generation (:func:`gr2.prompts.render.build_messages`, the
shuffled presentation keyed by ``example_id``) with ``reasoning=False``. The tokens every prompt of
the batch starts with (system message, template) are computed once (:class:`PrefixCache`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import pandas as pd
from tqdm.auto import tqdm

from gr2.eval.rerank import RerankOutput
from gr2.llm.scoring import (
    DirectEncoder,
    PositionPrior,
    PrefixCache,
    common_prefix,
    rank_by_scores,
    score_direct,
)
from gr2.prompts.parse import ParseResult
from gr2.prompts.render import ItemText, PromptConfig, build_messages

__all__ = ["rerank_lists_direct"]


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

    ranked_by = scores
    if prior is not None and cfg.order == "prerank":
        ranked_by = [prior.add(s, p.presented) for s, p in zip(scores, prompts)]
    outputs = []
    for e, p, s, r in zip(ids, prompts, scores, ranked_by):
        order = rank_by_scores(r)
        ranking = [p.candidate_sids[i] for i in order]
        result = ParseResult(status="ok", explanation=None, raw_ranking=ranking, order=order,
                             repaired=list(order), presented=list(p.presented))
        outputs.append(RerankOutput(e, json.dumps({"recommendations": ranking}), result, 0, [float(x) for x in s]))
    return outputs
