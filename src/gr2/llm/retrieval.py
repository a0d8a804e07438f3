"""The mid-trained LLM as a full-catalogue retriever (docs/method.md §4): trie-constrained beam search over
every valid SID, then Recall@k / NDCG@k of the held-out target (one target per example).

``evaluate_retrieval(model, tokenizer, sids_table, examples)`` renders each history as a prompt
(``prompt_fn``; by default the sequential next-SID task, :func:`default_prompt_fn`), decodes the top
``num_return`` items with :func:`gr2.llm.decoding.constrained_beam_search` and scores them with
:mod:`gr2.metrics.ranking`. A target that is not among the returned items counts as a miss (R = N = 0).

Shared by the LLM pre-ranker (:class:`gr2.prerank.llm_beam.LLMBeamPreranker`, the paper's "Pre-rank
(MTL)") and ``gr2 eval retrieval`` (:mod:`gr2.eval.retrieval`). No torch import at module level.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gr2.metrics.ranking import target_rank_metrics
from gr2.prompts import sequential as sequential_task
from gr2.prompts.sids import SID_BEGIN, render_sid

__all__ = ["as_examples", "codes_table", "default_prompt_fn", "evaluate_retrieval", "retrieval_metrics",
           "sequential_prompt"]

PromptFn = Callable[[Sequence[int], Sequence[Sequence[int]]], str]


def sequential_prompt(history: Sequence[int], sids: Sequence[Sequence[int]], max_history: int | None = 20) -> str:
    """Stand-alone prompt ``"The user bought: <|sid_begin|>…<|sid_end|> …. Next item: <|sid_begin|>"``
    (not the mid-training prompt: a mid-trained model wants :func:`default_prompt_fn`).

    ``history`` are item ids, oldest first (the last ``max_history`` are kept); ``sids[item_id]`` is its
    code tuple. The prompt ends with ``<|sid_begin|>``: decoding continues with the SID's first code.
    """
    hist = list(history)[-max_history:] if max_history else list(history)
    body = " ".join(render_sid(sids[int(i)], wrap=True) for i in hist)
    return f"The user bought: {body}. Next item: {SID_BEGIN}"


def default_prompt_fn(max_history: int | None = None) -> PromptFn:
    """The mid-training sequential task's prompt (:func:`gr2.prompts.sequential.sequential_prompt`:
    wrapped history SIDs, oldest first, the last ``max_history`` — default
    ``SEQUENTIAL_MAX_HISTORY``, ``MidtrainConfig.max_history``'s default — then ``"\nNext item:"``; the
    decoder appends ``<|sid_begin|>``, as the training completion starts with it), so inference matches
    training."""
    keep = sequential_task.SEQUENTIAL_MAX_HISTORY if max_history is None else max_history

    def prompt(history: Sequence[int], sids: Sequence[Sequence[int]]) -> str:
        hist = list(history)[-keep:] if keep else list(history)
        return sequential_task.sequential_prompt([render_sid(sids[int(i)], wrap=True) for i in hist])

    return prompt


def codes_table(sids_table: Any) -> list[tuple[int, ...]]:
    """``codes[item_id]`` from a list of code tuples (index = item id) or a ``sids.parquet`` frame
    (``item_id``, ``codes``)."""
    if hasattr(sids_table, "columns"):
        df = sids_table.sort_values("item_id")
        ids = df["item_id"].to_numpy()
        if not np.array_equal(ids, np.arange(len(ids))):
            raise ValueError("sids table item_id must be dense 0..N-1")
        return [tuple(int(c) for c in row) for row in df["codes"]]
    return [tuple(int(c) for c in row) for row in sids_table]


def as_examples(examples: Any) -> list[tuple[list[int], int]]:
    """``[(history, target), ...]`` from pairs or a candidates frame (``history``, ``target`` columns;
    rows with target < 0 are dropped)."""
    if hasattr(examples, "columns"):
        pairs = zip(examples["history"], examples["target"])
    else:
        pairs = examples
    out = [([int(i) for i in h], int(t)) for h, t in pairs]
    return [(h, t) for h, t in out if t >= 0]


def retrieval_metrics(ranked: Sequence[Sequence[int]], targets: Sequence[int], ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """Mean ``R@k``/``N@k`` over examples; ``ranked[i]`` item ids best first (any length).

    :func:`gr2.metrics.ranking.target_rank_metrics` of the target's rank in each list (a target that
    was not returned is a miss for every ``k``).
    """
    if len(ranked) != len(targets):
        raise ValueError("ranked and targets differ in length")
    ranks = [next((r for r, i in enumerate(items, 1) if int(i) == int(t)), 0) for items, t in zip(ranked, targets)]
    out = target_rank_metrics(ranks, ks)
    return {**{f"R@{k}": out[f"R@{k}"] for k in ks}, **{f"N@{k}": out[f"N@{k}"] for k in ks}, "n": float(len(targets))}


def evaluate_retrieval(
    model: Any,
    tokenizer: Any,
    sids_table: Any,
    examples: Any,
    prompt_fn: PromptFn | None = None,
    ks: Sequence[int] = (5, 10),
    num_beams: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    exclude_seen: bool = True,
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
    return_rankings: bool = False,
) -> dict[str, Any]:
    """Full-catalogue retrieval metrics of ``model`` on ``examples`` (``(history, target)`` pairs or a
    candidates frame).

    * ``prompt_fn(history, codes) -> str``: default :func:`default_prompt_fn` (the mid-training
      sequential task). It should end with ``<|sid_begin|>`` (appended otherwise).
    * ``num_beams``: default ``max(10, max(ks))``; ``num_return = max(ks)``.
    * ``sample``: evaluate a seeded random subset of this many examples (order kept).
    * ``exclude_seen``: items in the history may not be returned (as ``gr2.prerank.full_catalogue_metrics``
      does by default; on Beauty no target repeats a history item).

    Returns ``{"R@5", "R@10", "N@5", "N@10", "n", "num_beams", "exclude_seen", "seconds",
    "ms_per_example"}`` (+ ``"rankings"``: ``[[(item, logprob), ...], ...]`` with ``return_rankings``).
    """
    from gr2.lists import seeded_sample
    from gr2.llm.decoding import SidTrie, constrained_beam_search

    codes = codes_table(sids_table)
    pairs = seeded_sample(as_examples(examples), sample, seed)
    kmax = max(ks)
    num_beams = max(10, kmax) if num_beams is None else int(num_beams)
    prompt_fn = prompt_fn or default_prompt_fn()
    trie = SidTrie.from_codes(codes, tokenizer)
    prompts = [prompt_fn(h, codes) for h, _ in pairs]
    t0 = time.perf_counter()
    hits = constrained_beam_search(model, tokenizer, prompts, trie, num_beams=num_beams, num_return=kmax,
                                   batch_size=batch_size, exclude=[h for h, _ in pairs] if exclude_seen else None,
                                   max_prompt_tokens=max_prompt_tokens)
    seconds = time.perf_counter() - t0
    res: dict[str, Any] = retrieval_metrics([[i for i, _ in row] for row in hits], [t for _, t in pairs], ks)
    res.update(num_beams=num_beams, exclude_seen=bool(exclude_seen), seconds=round(seconds, 3),
               ms_per_example=round(1000 * seconds / max(len(pairs), 1), 2))
    if return_rankings:
        res["rankings"] = hits
    return res
