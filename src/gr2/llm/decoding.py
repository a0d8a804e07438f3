"""Trie-constrained beam search over valid semantic IDs (docs/method.md §4: the mid-trained LLM as a retriever).

The model is prompted with text that ends in ``<|sid_begin|>``; the search then emits SID tokens only
along paths of a :class:`SidTrie` built from the catalogue's SID table, and every returned hypothesis is a
**complete, valid, distinct** item. A trie path is ``code tokens (4 or 5 levels) + <|sid_end|>``: the end
token makes variable-length SIDs (collision-resolved items with an extra level, even one SID being a
prefix of another after a cold start) unambiguous, and its probability is part of each item's score.

Why our own beam loop instead of ``model.generate(prefix_allowed_tokens_fn=...)``:

* **Exactness.** ``generate`` keeps ``2 × num_beams`` candidates per step and lets finished hypotheses
  compete with running ones through a length penalty; with variable-length SIDs and a trie whose
  sub-trees may be small, it can return fewer than ``num_return_sequences`` distinct items or pad with
  duplicates. Here every candidate whose next token completes an item goes to the result pool (scored
  by its exact log-probability, no length penalty — i.e. ``length_penalty=0``: items are ranked by the
  joint log-probability of their SID tokens and end token), the ``num_beams`` best unfinished ones are
  expanded, and the search stops early only when no running beam can beat the pool (log-probs only
  fall). The result has exactly ``min(num_return, #allowed items)`` distinct items.
* **Nothing inherited.** ``generate`` merges the model's ``generation_config.json`` (``do_sample``,
  ``temperature``, ``top_k``, ``top_p``, repetition penalties, ...) into every call unless each field is
  overridden; this loop never reads ``generation_config`` at all. It is greedy-deterministic by
  construction: no sampling, no temperature (log-softmax of the raw logits, normalised over the full
  vocabulary, then restricted to the trie — like ``generate``'s logits processors, which do not
  renormalise), no top-k/top-p, no repetition penalty. ``max_new_tokens`` is implicit: the trie depth
  (levels + 1 for ``<|sid_end|>``).
* **Speed.** The prompt is encoded once per batch, the KV cache is reordered in place, the last logits
  only are computed (``logits_to_keep=1``) and per step only allowed tokens are gathered.

Seen-item exclusion (``exclude=``): an excluded item's complete SID is removed from that prompt's trie
(a node stays allowed while it still leads to at least one non-excluded item), so beams never waste
capacity on prefixes that only lead to excluded items.

Usage::

    trie = SidTrie.from_codes(codes_per_item, tokenizer)          # codes_per_item[item_id] = (97, 168, ...)
    hits = constrained_beam_search(model, tokenizer, prompts, trie, num_beams=10, num_return=10)
    hits[0]  # [(item_id, logprob), ...] best first
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SidTrie", "constrained_beam_search", "encode_prompts"]


class SidTrie:
    """Prefix tree over SID token-id sequences; node 0 is the root (the position right after
    ``<|sid_begin|>``).

    ``SidTrie(token_seqs, end_id=..., begin_id=..., item_ids=...)``: ``token_seqs[i]`` are the SID
    tokens of item ``item_ids[i]`` (default ``i``) *without* begin/end; when ``end_id`` is given it is
    appended to every path (recommended; required when one SID is a prefix of another).
    :meth:`from_codes` builds it from code tuples and a tokenizer that has the SID vocabulary.
    Duplicate SIDs raise ``ValueError``: the table must be collision-resolved.
    """

    def __init__(
        self,
        token_seqs: Iterable[Sequence[int]],
        end_id: int | None = None,
        begin_id: int | None = None,
        item_ids: Sequence[int] | None = None,
    ) -> None:
        self.end_id = None if end_id is None else int(end_id)
        self.begin_id = None if begin_id is None else int(begin_id)
        children: list[dict[int, int]] = [{}]
        parent: list[int] = [-1]
        item: list[int] = [-1]
        seqs = [tuple(int(t) for t in s) for s in token_seqs]
        ids = list(range(len(seqs))) if item_ids is None else [int(i) for i in item_ids]
        if len(ids) != len(seqs):
            raise ValueError(f"{len(seqs)} SIDs but {len(ids)} item ids")
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be distinct")
        self.item_node: dict[int, int] = {}
        for iid, seq in zip(ids, seqs):
            if not seq:
                raise ValueError(f"item {iid}: empty SID")
            path = seq + ((self.end_id,) if self.end_id is not None else ())
            node = 0
            for tok in path:
                if item[node] >= 0:
                    raise ValueError(f"item {iid}: the SID of item {item[node]} is a prefix of its SID; "
                                     "give end_id (the <|sid_end|> token) to make SIDs prefix-free")
                nxt = children[node].get(tok)
                if nxt is None:
                    nxt = len(children)
                    children[node][tok] = nxt
                    children.append({})
                    parent.append(node)
                    item.append(-1)
                node = nxt
            if item[node] >= 0:
                raise ValueError(f"items {item[node]} and {iid} have the same SID {seq}: resolve collisions first")
            if children[node]:
                raise ValueError(f"item {iid}: its SID is a prefix of another item's SID; give end_id")
            item[node] = iid
            self.item_node[iid] = node
        self.children = children
        self.parent = np.asarray(parent, dtype=np.int64)
        self.item = np.asarray(item, dtype=np.int64)
        count = np.zeros(len(children), dtype=np.int64)  # items under each node
        for node in self.item_node.values():
            n = node
            while n >= 0:
                count[n] += 1
                n = parent[n]
        self.count = count
        self.depth = max((len(s) for s in seqs), default=0) + (self.end_id is not None)
        # per node: child tokens and child nodes as arrays (sorted by token) for the beam loop
        self.child_tok = [np.asarray(sorted(c), dtype=np.int64) for c in children]
        self.child_node = [np.asarray([c[t] for t in sorted(c)], dtype=np.int64) for c in children]

    @classmethod
    def from_codes(cls, codes: Iterable[Sequence[int]], tokenizer: Any, item_ids: Sequence[int] | None = None,
                   use_end: bool = True) -> SidTrie:
        """Trie of code tuples (``codes[i]`` = SID of item ``item_ids[i]``, default ``i``; 4 or 5 levels
        mixed), mapped to token ids with the tokenizer's SID vocabulary (``add_sid_tokens`` first)."""
        from gr2.llm.vocab import (
            _token_id,  # noqa: PLC2701 — same package
            sid_special_ids,
            sid_token,
        )

        codes = [tuple(int(c) for c in row) for row in codes]
        begin, end = sid_special_ids(tokenizer)
        cache: dict[tuple[int, int], int] = {}

        def tid(level: int, code: int) -> int:
            key = (level, code)
            if key not in cache:
                cache[key] = _token_id(tokenizer, sid_token(level, code))
            return cache[key]

        seqs = [[tid(lv, c) for lv, c in enumerate(row)] for row in codes]
        return cls(seqs, end_id=end if use_end else None, begin_id=begin, item_ids=item_ids)

    # -- queries ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_node)

    @property
    def item_ids(self) -> list[int]:
        return list(self.item_node)

    def node_of(self, prefix_token_ids: Sequence[int]) -> int:
        """Node reached by ``prefix_token_ids`` (a leading ``<|sid_begin|>`` is skipped); -1 if invalid."""
        toks = [int(t) for t in prefix_token_ids]
        if toks and self.begin_id is not None and toks[0] == self.begin_id:
            toks = toks[1:]
        node = 0
        for t in toks:
            node = self.children[node].get(t, -1)
            if node < 0:
                return -1
        return node

    def allowed_next(self, prefix_token_ids: Sequence[int]) -> list[int]:
        """Token ids that may follow ``prefix_token_ids`` (tokens after ``<|sid_begin|>``; a leading
        begin token is accepted and skipped). ``[]`` for a complete SID or a prefix of no SID."""
        node = self.node_of(prefix_token_ids)
        return [] if node < 0 else [int(t) for t in self.child_tok[node]]

    def item_of(self, token_ids: Sequence[int]) -> int | None:
        """Item id of a complete SID path (code tokens, plus the end token when the trie uses one)."""
        node = self.node_of(token_ids)
        if node < 0 or self.item[node] < 0:
            return None
        return int(self.item[node])

    def path(self, item_id: int) -> list[int]:
        """Token ids of ``item_id``'s full trie path (codes + end token)."""
        node = self.item_node[int(item_id)]
        out: list[int] = []
        while node > 0:
            p = int(self.parent[node])
            out.append(next(t for t, c in self.children[p].items() if c == node))
            node = p
        return out[::-1]

    def blocked_counts(self, exclude: Iterable[int]) -> Counter:
        """``node -> number of excluded items under it`` (unknown item ids are ignored)."""
        blocked: Counter = Counter()
        for iid in set(int(i) for i in exclude):
            node = self.item_node.get(iid)
            while node is not None and node >= 0:
                blocked[node] += 1
                node = int(self.parent[node]) if node > 0 else None
        return blocked


# --------------------------------------------------------------------------------------------------
def encode_prompts(tokenizer: Any, prompts: Sequence[str], begin_id: int | None, add_special_tokens: bool = True,
                   max_prompt_tokens: int | None = None) -> list[list[int]]:
    """Token ids per prompt; ``begin_id`` is appended when a prompt does not already end with it.
    ``max_prompt_tokens`` keeps the last tokens (history is oldest first, so the oldest part goes)."""
    out = []
    for p in prompts:
        ids = list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"])
        if begin_id is not None and (not ids or ids[-1] != begin_id):
            ids.append(int(begin_id))
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            ids = ids[-max_prompt_tokens:]
        out.append(ids)
    return out


def _forward(model: Any, input_ids, attention_mask, position_ids, past, keep_arg: bool):
    kw = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
              past_key_values=past, use_cache=True, return_dict=True)
    if keep_arg:
        kw["logits_to_keep"] = 1
    out = model(**kw)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1), out.past_key_values


@torch.no_grad()
def constrained_beam_search(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    trie: SidTrie,
    num_beams: int = 10,
    num_return: int | None = None,
    batch_size: int = 8,
    exclude: Sequence[Iterable[int]] | None = None,
    add_special_tokens: bool = True,
    max_prompt_tokens: int | None = None,
    device: str | torch.device | None = None,
) -> list[list[tuple[int, float]]]:
    """Top items per prompt, ``[(item_id, logprob), ...]`` best first (ties: lower item id first).

    ``prompts`` should end with ``<|sid_begin|>`` (appended when missing; the trie starts after it).
    ``num_return`` defaults to ``num_beams`` and may not exceed it. ``exclude[i]``: item ids that prompt
    ``i`` may not return (e.g. its history). ``logprob`` = sum of the log-probabilities of the SID's code
    tokens and ``<|sid_end|>`` (no length normalisation). Deterministic; the model's
    ``generation_config`` is never consulted (see the module docstring).
    """
    num_return = num_beams if num_return is None else int(num_return)
    if num_beams < 1 or num_return < 1:
        raise ValueError("num_beams and num_return must be >= 1")
    if num_return > num_beams:
        raise ValueError(f"num_return ({num_return}) may not exceed num_beams ({num_beams})")
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError("exclude must have one entry per prompt")
    if len(trie) == 0:
        return [[] for _ in prompts]
    was_training = bool(getattr(model, "training", False))
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
    encoded = encode_prompts(tokenizer, prompts, trie.begin_id, add_special_tokens, max_prompt_tokens)
    results: list[list[tuple[int, float]]] = []
    try:
        for s in range(0, len(prompts), batch_size):
            blocked = [trie.blocked_counts(exclude[i]) if exclude is not None else Counter()
                       for i in range(s, min(s + batch_size, len(prompts)))]
            results.extend(_search_batch(model, trie, encoded[s:s + batch_size], blocked, num_beams, num_return,
                                         int(pad), dev, keep_arg))
    finally:
        if was_training:
            model.train()
    return results


def _search_batch(model, trie: SidTrie, enc: list[list[int]], blocked: list[Counter], num_beams: int,
                  num_return: int, pad: int, dev, keep_arg: bool) -> list[list[tuple[int, float]]]:
    B = len(enc)
    T = max(len(e) for e in enc)
    ids = torch.full((B, T), pad, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(enc):  # left padding
        ids[i, T - len(e):] = torch.tensor(e, dtype=torch.long)
        mask[i, T - len(e):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logp, past = _forward(model, ids, mask, pos, None, keep_arg)
    last_pos = pos[:, -1]

    blocked_arr: list[np.ndarray | None] = []
    for blk in blocked:
        if blk:
            arr = np.zeros(len(trie.count), dtype=np.int64)
            arr[np.fromiter(blk.keys(), dtype=np.int64)] = np.fromiter(blk.values(), dtype=np.int64)
            blocked_arr.append(arr)
        else:
            blocked_arr.append(None)
    # running rows: prompt index, trie node, score (row r <-> cache row r)
    row_prompt = np.arange(B)
    row_node = np.zeros(B, dtype=np.int64)
    row_score = np.zeros(B, dtype=np.float64)
    pools: list[list[tuple[float, int]]] = [[] for _ in range(B)]  # (logprob, item) finished

    for _step in range(trie.depth):
        # gather the allowed continuation tokens of every row
        r_idx, toks, kids = [], [], []
        for r, node in enumerate(row_node):
            ct, cn = trie.child_tok[node], trie.child_node[node]
            blk = blocked_arr[row_prompt[r]]
            if blk is not None:
                ok = trie.count[cn] - blk[cn] > 0
                ct, cn = ct[ok], cn[ok]
            r_idx.append(np.full(len(ct), r, dtype=np.int64))
            toks.append(ct)
            kids.append(cn)
        r_all = np.concatenate(r_idx)
        t_all = np.concatenate(toks)
        k_all = np.concatenate(kids)
        if len(r_all) == 0:
            break
        lp = logp[torch.from_numpy(r_all).to(logp.device), torch.from_numpy(t_all).to(logp.device)]
        cand = row_score[r_all] + lp.double().cpu().numpy()
        cand_prompt = row_prompt[r_all]
        # best first; ties by child node id (deterministic)
        order = np.lexsort((k_all, -cand, cand_prompt))
        term = trie.item[k_all[order]] >= 0

        def first_per_prompt(idx: np.ndarray, n: int) -> np.ndarray:
            pp = cand_prompt[idx]  # sorted by prompt already
            rank = np.arange(len(idx)) - np.searchsorted(pp, pp, side="left")
            return idx[rank < n]

        for j in first_per_prompt(order[term], num_return):  # candidates that complete an item
            pools[int(cand_prompt[j])].append((float(cand[j]), int(trie.item[k_all[j]])))
        sel = first_per_prompt(order[~term], num_beams)  # the best running beams
        new_rows = r_all[sel].tolist()
        new_tok = t_all[sel].tolist()
        new_node = k_all[sel].tolist()
        new_score = cand[sel].tolist()
        new_prompt = cand_prompt[sel].tolist()
        # keep the best num_return per pool; drop beams that cannot beat a full pool
        keep = []
        for p in range(B):
            pools[p].sort(key=lambda x: (-x[0], x[1]))
            del pools[p][num_return:]
        for i, p in enumerate(new_prompt):
            if len(pools[p]) >= num_return and new_score[i] <= pools[p][-1][0]:
                continue
            keep.append(i)
        if not keep:
            break
        parents = torch.tensor([new_rows[i] for i in keep], dtype=torch.long, device=dev)
        past.reorder_cache(parents)
        mask = torch.cat([mask.index_select(0, parents), torch.ones((len(keep), 1), dtype=mask.dtype, device=dev)], 1)
        last_pos = last_pos.index_select(0, parents) + 1
        row_prompt = np.asarray([new_prompt[i] for i in keep], dtype=np.int64)
        row_node = np.asarray([new_node[i] for i in keep], dtype=np.int64)
        row_score = np.asarray([new_score[i] for i in keep], dtype=np.float64)
        step_ids = torch.tensor([[new_tok[i]] for i in keep], dtype=torch.long, device=dev)
        logp, past = _forward(model, step_ids, mask, last_pos[:, None], past, keep_arg)
    return [[(item, score) for score, item in pool] for pool in pools]
