"""The mid-trained LLM as a pre-ranker: the paper's **"Pre-rank (MTL)"** — candidates retrieved by the
multi-task mid-trained model with trie-constrained beam search over valid SIDs (docs/method.md §4).

``score`` returns, per history, the beam log-probability of each returned item and ``-inf`` for every
other item, so :func:`gr2.prerank.base.top_k` with ``k <= num_return`` yields the beam's items in beam
order. With ``k > num_return`` the remaining places are filled by ``-inf`` items in item-id order
(meaningless: ask for at least as many beams as candidates).

``fit`` trains nothing: it loads the model (registry name or ``save_pretrained`` folder, e.g. a run's
``midtrain/model``) given to the constructor and builds the SID trie. Seen items are excluded inside
the search when ``exclude_seen`` (default), so the beam's capacity is not spent on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gr2.prerank.base import Preranker

__all__ = ["LLMBeamPreranker"]


class LLMBeamPreranker(Preranker):
    """Pre-rank (MTL): constrained beam search with a mid-trained LLM.

    Args:
        model_path: registry name or model folder, loaded in :meth:`fit` with ``gr2.llm.registry.load``
            (ignored when ``model``/``tokenizer`` are given).
        sids: ``sids[item_id]`` = code tuple, or a ``sids.parquet`` frame.
        prompt_fn: ``prompt_fn(history, codes) -> str``; default the mid-training sequential task.
        num_beams / num_return: beam width and number of items scored per history (``num_return``
            defaults to ``num_beams``).
        add_tokens: call ``add_sid_tokens`` after loading (a no-op for a mid-trained model; lets an
            untrained base model run, e.g. for latency).
    """

    def __init__(
        self,
        model_path: str | None = None,
        sids: Any = None,
        prompt_fn: Callable[[Sequence[int], Sequence[Sequence[int]]], str] | None = None,
        num_beams: int = 10,
        num_return: int | None = None,
        batch_size: int = 8,
        exclude_seen: bool = True,
        max_prompt_tokens: int | None = None,
        device: str | None = None,
        add_tokens: bool = False,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if sids is None:
            raise ValueError("LLMBeamPreranker needs the SID table (sids=)")
        if model_path is None and (model is None or tokenizer is None):
            raise ValueError("give model_path, or model and tokenizer")
        self.model_path = model_path
        self.sids = sids
        self.prompt_fn = prompt_fn
        self.num_beams = int(num_beams)
        self.num_return = int(num_return) if num_return is not None else int(num_beams)
        self.batch_size = int(batch_size)
        self.exclude_seen = bool(exclude_seen)
        self.max_prompt_tokens = max_prompt_tokens
        self.device = device
        self.add_tokens = add_tokens
        self.model = model
        self.tokenizer = tokenizer
        self.trie = None

    def fit(self, train_sequences: list[list[int]], n_items: int,
            valid: list[tuple[list[int], int]] | None = None) -> None:
        from gr2.llm.decoding import SidTrie
        from gr2.llm.retrieval import codes_table, default_prompt_fn

        self.codes = codes_table(self.sids)
        if len(self.codes) != n_items:
            raise ValueError(f"the SID table has {len(self.codes)} items, the catalogue {n_items}")
        self.n_items = int(n_items)
        if self.model is None or self.tokenizer is None:
            from gr2.llm.registry import load

            self.model, self.tokenizer = load(self.model_path, device=self.device)
        if self.add_tokens:
            from gr2.llm.vocab import add_sid_tokens

            levels = max(len(c) for c in self.codes)
            size = max(max(c) for c in self.codes) + 1
            add_sid_tokens(self.model, self.tokenizer, levels=levels, codebook_size=max(size, 256))
        self.model.eval()
        if self.prompt_fn is None:
            self.prompt_fn = default_prompt_fn()
        self.trie = SidTrie.from_codes(self.codes, self.tokenizer)

    def retrieve(self, histories: list[list[int]]) -> list[list[tuple[int, float]]]:
        """``[(item_id, logprob), ...]`` per history, best first."""
        from gr2.llm.decoding import constrained_beam_search

        if self.trie is None:
            raise RuntimeError("call fit() first")
        prompts = [self.prompt_fn(h, self.codes) for h in histories]
        return constrained_beam_search(
            self.model, self.tokenizer, prompts, self.trie, num_beams=self.num_beams, num_return=self.num_return,
            batch_size=self.batch_size, exclude=histories if self.exclude_seen else None,
            max_prompt_tokens=self.max_prompt_tokens)

    def score(self, histories: list[list[int]]) -> np.ndarray:
        if self.trie is None:
            raise RuntimeError("call fit() first")
        out = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        for r, row in enumerate(self.retrieve(histories)):
            for item, lp in row:
                out[r, item] = lp
        return out
