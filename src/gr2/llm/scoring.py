"""The one scoring core: each candidate's log-probability of being written first, all K in one
forward pass. Serving (:mod:`gr2.serve`), the eval's direct rows (:func:`gr2.llm.rerank.rerank_lists_direct`) and the
listwise training objective (:mod:`gr2.sft.listwise`) all score through :func:`direct_logprobs`, so
the score a model is trained on is exactly the score it is served and evaluated by.

**Direct scoring.** A candidate's score is the log-probability that the model writes its SID as the
*first* recommendation: ``log p(SID tokens, separator | prompt + '{"recommendations": ["')``. The
separator (the first token of ``", "``) ends every path, so an SID that is a prefix of another is
not favoured for being shorter. The K candidate paths form a token trie (SIDs sharing leading codes
share nodes); each trie node that has children is fed once, after the prompt, with a custom 4-D
attention mask: a node sees the prompt and its own ancestors only ("tree attention"). One forward
pass over ``prompt suffix + trie nodes`` therefore scores all K candidates, and logits are projected
onto the vocabulary only at the positions whose next-token distribution is needed (the last prompt
token and the inner trie nodes: ``logits_to_keep`` as a boolean mask), not at every prompt position.

Several requests are batched as right-padded rows (each row its own mask); padding positions see
the shared prefix and themselves only and their logits are never read.

**Prefix cache.** Every prompt of a mode starts with the same system message (docs/method.md §9:
the prompt is laid out so that a shared prefix can be cached). :class:`PrefixCache` runs that prefix
once and every batch starts from its keys/values (broadcast to the batch), so only the
request-specific suffix is computed. A prompt whose tokens do not start with the cached ids is
computed from scratch (correct, just slower). Training never uses it: the prefix's keys/values
change with the weights.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ANSWER_PREFIX",
    "DirectEncoder",
    "PositionPrior",
    "PrefixCache",
    "ScoreInput",
    "answer_separator",
    "common_prefix",
    "direct_logprobs",
    "direct_prompt_ids",
    "rank_by_scores",
    "score_direct",
    "sid_path",
]

ANSWER_PREFIX = '{"recommendations": ["'
"""What the direct-mode answer starts with; the first SID follows it."""


@dataclass
class ScoreInput:
    """One direct-mode request: ``ids`` = the templated prompt followed by the answer's opening
    ``{"recommendations": ["`` (token ids); ``paths[i]`` = candidate i's SID tokens + separator."""

    ids: list[int]
    paths: list[list[int]]


def answer_separator(tokenizer: Any) -> int:
    """The token that follows an SID inside the ``recommendations`` list (first token of ``", "``)."""
    return int(tokenizer('", "', add_special_tokens=False)["input_ids"][0])


def direct_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a direct-mode input: the chat-templated prompt, then :data:`ANSWER_PREFIX`."""
    from gr2.prompts.chat import apply_chat_template

    text = apply_chat_template(tokenizer, messages, add_generation_prompt=True, fallback="chatml") + ANSWER_PREFIX
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def sid_path(tokenizer: Any, sid: str, sid_wrap: bool, separator: int) -> list[int]:
    """Token ids of an SID as an answer writes it (wrapped when the prompt wraps SIDs), then the
    ``separator`` (:func:`answer_separator`) that ends every candidate path."""
    shown = f"<|sid_begin|>{sid}<|sid_end|>" if sid_wrap else sid
    return list(tokenizer(shown, add_special_tokens=False)["input_ids"]) + [int(separator)]


class DirectEncoder:
    """Direct-mode model inputs of rendered prompts: the templated prompt + :data:`ANSWER_PREFIX`
    and each candidate's SID path (cached per SID). Serving, the eval's direct rows and the listwise
    training objective all encode through it, so they score the same tokens."""

    def __init__(self, tokenizer: Any, sid_wrap: bool) -> None:
        self.tokenizer = tokenizer
        self.sid_wrap = sid_wrap
        self.separator = answer_separator(tokenizer)
        self._paths: dict[str, list[int]] = {}

    def path(self, sid: str) -> list[int]:
        """Token ids of ``sid`` as the answer writes it, plus the separator that follows it."""
        if sid not in self._paths:
            self._paths[sid] = sid_path(self.tokenizer, sid, self.sid_wrap, self.separator)
        return self._paths[sid]

    def encode(self, messages: list[dict[str, str]], candidate_sids: Sequence[str]) -> ScoreInput:
        """The input scoring ``candidate_sids`` (in the order the scores should come back in)."""
        return ScoreInput(direct_prompt_ids(self.tokenizer, messages), [self.path(s) for s in candidate_sids])


def common_prefix(sequences: Sequence[Sequence[int]]) -> list[int]:
    """The longest prefix shared by all ``sequences``, less its last token (a BPE merge may cross the
    border, and a :class:`PrefixCache` must leave at least one token of every prompt uncached)."""
    if not sequences:
        return []
    first = list(sequences[0])
    n = min(len(s) for s in sequences)
    for s in sequences[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return first[:max(n - 1, 0)]


def rank_by_scores(scores: list[float]) -> list[int]:
    """Indices by decreasing score; a non-finite score ranks last; ties keep the lower index."""
    clean = [s if math.isfinite(s) else -math.inf for s in scores]
    return sorted(range(len(clean)), key=lambda i: (-clean[i], i))


@dataclass
class PositionPrior:
    """What the order a list is shown in says on its own: ``log_prior[j]`` = log P(the true next item is
    the candidate shown at position j), estimated from training lists shown in the pre-ranker's order.

    A model trained with it (``sft.listwise_position_prior``) is scored as ``model_scale · its
    log-probability + log_prior[shown position]`` wherever the candidates are shown in the
    pre-ranker's order, so the language model only has to learn what the order does not already say
    (logit adjustment: the listwise softmax fits the model's part as a residual over the order's
    prior), and ``model_scale``, learnt with it, says how much the model's part is trusted. It is
    saved as :data:`PositionPrior.FILE` in the model folder and read back by the eval and the server.
    With ``model_scale`` 0 (or all model scores equal) a list is ranked exactly in the order shown.
    """

    log_prior: list[float]
    model_scale: float = 1.0

    FILE = "position_prior.json"

    @classmethod
    def estimate(cls, labels: Iterable[Sequence[float]], smoothing: float = 1.0) -> PositionPrior:
        """From the labels of lists in pre-rank order (one positive each): the share of lists whose
        positive sits at each position, Laplace-smoothed by ``smoothing`` so no position is impossible,
        as log-probabilities (length: the longest list)."""
        rows = [[float(x) for x in row] for row in labels]
        if not rows:
            raise ValueError("no lists to estimate a position prior from")
        counts = [0.0] * max(len(r) for r in rows)
        for row in rows:
            counts[max(range(len(row)), key=lambda j: row[j])] += 1.0
        total = sum(counts) + smoothing * len(counts)
        return cls([math.log((c + smoothing) / total) for c in counts])

    def offsets(self, presented: Sequence[int]) -> list[float]:
        """Per candidate in pre-rank order, the prior of the position it is shown at (``presented[j]``
        = pre-rank index of the j-th candidate shown); positions past the estimated length get the
        last one's prior."""
        out = [0.0] * len(presented)
        for shown, prerank in enumerate(presented):
            out[prerank] = self.log_prior[min(shown, len(self.log_prior) - 1)]
        return out

    def add(self, scores: Sequence[float], presented: Sequence[int]) -> list[float]:
        """``model_scale · scores`` (pre-rank order) plus :meth:`offsets`."""
        return [self.model_scale * float(s) + o for s, o in zip(scores, self.offsets(presented))]

    def save(self, folder: str | Path) -> None:
        Path(folder, self.FILE).write_text(json.dumps({"log_prior": self.log_prior, "model_scale": self.model_scale})
                                           + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> PositionPrior | None:
        """The prior saved in a model folder, or ``None`` when it was trained without one."""
        path = Path(folder, cls.FILE)
        if not path.is_file():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls([float(x) for x in raw["log_prior"]], float(raw.get("model_scale", 1.0)))


def direct_ranking(scores: Sequence[float], presented: Sequence[int], shown_order: str,
                   prior: PositionPrior | None = None) -> tuple[list[float], list[int]]:
    """How a direct answer ranks: ``(scores it ranks by, order)``, both over the candidates in pre-rank
    order, the order best first. ``scores`` are the model's log-probabilities (:func:`score_direct`);
    with a ``prior`` and the candidates shown in the pre-ranker's order (``shown_order == "prerank"``)
    the ranking scores are :meth:`PositionPrior.add`'s, else the model's own (shown shuffled, the order
    says nothing). A non-finite score ranks last (as ``-inf``). Shared by the eval and the server."""
    ranked_by = prior.add(scores, presented) if prior is not None and shown_order == "prerank" else list(scores)
    ranked_by = [s if math.isfinite(s) else -math.inf for s in ranked_by]
    return ranked_by, rank_by_scores(ranked_by)


class PrefixCache:
    """Keys/values of a token prefix shared by all prompts of one mode (computed once)."""

    def __init__(self, model: Any, ids: Sequence[int]) -> None:
        self.ids = [int(t) for t in ids]
        if not self.ids:
            raise ValueError("empty prefix")
        dev = next(model.parameters()).device
        with torch.no_grad():
            out = model(input_ids=torch.tensor([self.ids], device=dev), use_cache=True, logits_to_keep=1)
        self.layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    def __len__(self) -> int:
        return len(self.ids)

    def matches(self, ids: Sequence[int]) -> bool:
        """Whether ``ids`` start with the cached prefix and go beyond it."""
        n = len(self.ids)
        return len(ids) > n and list(ids[:n]) == self.ids

    def cache(self, batch: int) -> Any:
        """A fresh ``DynamicCache`` holding the prefix for ``batch`` rows (the stored tensors are
        never written to: each layer's update concatenates into new tensors)."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                                            for k, v in self.layers])


@dataclass
class _Tree:
    tokens: list[int]   # node -> token
    parent: list[int]   # node -> parent node (-1: the prompt's last position)
    depth: list[int]    # node -> 1 for first SID token
    ends: list[int]     # candidate -> its last node
    inner: list[int]    # nodes with children, in creation order (parents before children)


def _trie(paths: Sequence[Sequence[int]]) -> _Tree:
    tokens: list[int] = []
    parent: list[int] = []
    depth: list[int] = []
    index: dict[tuple[int, int], int] = {}
    ends: list[int] = []
    for path in paths:
        if not path:
            raise ValueError("empty candidate path")
        p = -1
        for t in path:
            node = index.get((p, int(t)))
            if node is None:
                node = len(tokens)
                index[(p, int(t))] = node
                tokens.append(int(t))
                parent.append(p)
                depth.append(1 if p < 0 else depth[p] + 1)
            p = node
        ends.append(p)
    has_child = set(parent)
    return _Tree(tokens, parent, depth, ends, [n for n in range(len(tokens)) if n in has_child])


def _keep_arg(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def direct_logprobs(model: Any, batch: Sequence[ScoreInput], prefix: PrefixCache | None = None,
                    pad_id: int = 0) -> list[torch.Tensor]:
    """Per request, a float32 tensor of each candidate's path log-probability (see the module
    docstring), differentiable with respect to the model's weights when called with gradients on.

    ``prefix`` is used for every row when all rows start with it; otherwise the batch is computed
    without it.
    """
    if not batch:
        return []
    if prefix is not None and not all(prefix.matches(r.ids) for r in batch):
        prefix = None
    P = len(prefix) if prefix is not None else 0
    trees = [_trie(r.paths) for r in batch]
    suffixes = [r.ids[P:] for r in batch]
    lengths = [len(s) + len(t.inner) for s, t in zip(suffixes, trees)]
    B, L = len(batch), max(lengths)
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype

    ids = torch.full((B, L), int(pad_id), dtype=torch.long)
    pos = torch.arange(P, P + L).repeat(B, 1)
    allow = torch.zeros((B, L, P + L), dtype=torch.bool)
    allow[:, :, :P] = True
    keep = torch.zeros((B, L), dtype=torch.bool)
    slots: list[dict[int, int]] = []  # per row: node (or -1 for the prompt end) -> row position
    for b, (suf, tree) in enumerate(zip(suffixes, trees)):
        S = len(suf)
        ids[b, :S] = torch.tensor(suf, dtype=torch.long)
        allow[b, :S, P:P + S] = torch.ones((S, S), dtype=torch.bool).tril()
        slot = {-1: S - 1}
        for j, node in enumerate(tree.inner):
            slot[node] = S + j
        for j, node in enumerate(tree.inner):
            q = S + j
            ids[b, q] = tree.tokens[node]
            pos[b, q] = P + S - 1 + tree.depth[node]
            allow[b, q, P:P + S] = True
            a = node
            while a >= 0:  # itself and its ancestors
                allow[b, q, P + slot[a]] = True
                a = tree.parent[a]
        for q in range(lengths[b], L):  # padding: the prefix and itself, never read
            allow[b, q, P + q] = True
        keep[b, [slot[n] for n in [-1, *tree.inner]]] = True
        slots.append(slot)

    mask = torch.zeros((B, 1, L, P + L), dtype=dtype)
    mask.masked_fill_(~allow[:, None], torch.finfo(dtype).min)
    kw: dict[str, Any] = dict(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                              past_key_values=prefix.cache(B) if prefix is not None else None,
                              use_cache=prefix is not None)
    if _keep_arg(model):
        kw["logits_to_keep"] = keep.to(dev)
        logits = model(**kw).logits  # (rows kept, V), row-major over (b, position)
    else:
        logits = model(**kw).logits[keep.to(dev)]
    logp = torch.log_softmax(logits.float(), dim=-1)

    # Gather every node's token log-probability at its parent's kept row, then sum each candidate's
    # path (root to end) with index tensors, so the result stays on the autograd graph.
    rows: list[int] = []
    toks: list[int] = []
    node_base: list[int] = []
    base = 0
    for b, tree in enumerate(trees):
        kept = keep[b].nonzero().flatten().tolist()  # row positions, ascending = order in logp
        at = {p: base + i for i, p in enumerate(kept)}
        base += len(kept)
        node_base.append(len(rows))
        rows.extend(at[slots[b][tree.parent[n]]] for n in range(len(tree.tokens)))
        toks.extend(tree.tokens)
    node_lp = logp[torch.tensor(rows, device=logp.device), torch.tensor(toks, device=logp.device)]
    out: list[torch.Tensor] = []
    for b, tree in enumerate(trees):
        members: list[int] = []
        owners: list[int] = []
        for c, end in enumerate(tree.ends):
            n = end
            while n >= 0:
                members.append(node_base[b] + n)
                owners.append(c)
                n = tree.parent[n]
        sums = torch.zeros(len(tree.ends), dtype=node_lp.dtype, device=node_lp.device)
        out.append(sums.index_add(0, torch.tensor(owners, device=node_lp.device),
                                  node_lp[torch.tensor(members, device=node_lp.device)]))
    return out


@torch.no_grad()
def score_direct(model: Any, batch: Sequence[ScoreInput], prefix: PrefixCache | None = None,
                 pad_id: int = 0) -> list[list[float]]:
    """:func:`direct_logprobs` as plain floats, without gradients: what serving and the eval use."""
    return [scores.cpu().tolist() for scores in direct_logprobs(model, batch, prefix, pad_id)]
