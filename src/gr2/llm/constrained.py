"""Answers that are valid by construction: a logits processor that lets a sampled answer be only a
ranking of *its own* candidates, in the exact answer format the model was fine-tuned on.

Free sampling from a weak policy almost never yields a valid ranking (docs/training.md: 0 of 72 RL
rollouts of the CPU student), so every rollout earns the invalid-output reward and RL has no signal.
:class:`RankingLogitsProcessor` masks the logits at every step so that the only reachable answers
are::

    reasoning-free  {"recommendations": ["SID", "SID", ..., "SID"]}<end of turn>
    reasoning       {"explanation": "<free text>", "recommendations": ["SID", ..., "SID"]}<end of turn>

with exactly the K candidate SIDs of that row, each once, in any order. The JSON frame is cut from
:func:`gr2.prompts.render.assistant_text` (the SFT target), so the constrained answer is the text
SFT taught, and :func:`gr2.prompts.parse.parse_output` reads every such answer as a valid
permutation.

**Per row, a small automaton over token ids.** Forced pieces (the frame, the separator ``", "``
between SIDs, the closing ``"]}`` and the end of turn after the K-th SID) are token sequences of
their own text, allowed one token at a time. Inside the list, the allowed tokens are the next tokens
of the not-yet-used candidate SID paths: a per-row token trie (:class:`gr2.llm.decoding.SidTrie`
with a sentinel end, so an SID that is a prefix of another still ends where it should) with the
count of unused items under each node; where a path completes an unused item, the first token of
the following frame is allowed too, and choosing it consumes the item. Every piece is tokenised on
its own; the decoded answer is the concatenation of the pieces' texts (byte-level BPE decodes
piecewise exactly). With SID tokens in the vocabulary the pieces are also the tokens SFT saw
(checked for SmolLM2: an SFT target tokenised whole equals its pieces, wrapped or not).

**The explanation** (reasoning mode) is free text except for JSON string syntax: tokens holding a
``"`` or a ``\\`` are banned (no escapes: a quote cannot end the string early), and so are special
tokens (EOS, end of turn). The string ends with a *closing* token: any token ``A"B`` whose ``"B``
starts the closer ``", "recommendations": ["`` (BPE often merges the last punctuation with the
quote), after which the rest of the closer is forced. The explanation is non-empty (a whitespace-
only one is not an explanation to :func:`parse_output`), and it is closed in time: a free token
is allowed only while the tokens left after it still fit the worst-case closer plus the whole
ranking, so the answer is complete within ``max_new_tokens``.

The processor only *masks* (it is applied before temperature / top-p, which keeps sampling among
the allowed tokens); log-probabilities under the policy stay those of the unconstrained model.
One processor serves one ``generate`` call: it records the prompt length on its first call and
follows each row's sampled tokens from then on. Beam search and ``num_return_sequences > 1`` are
not supported (one candidate list per generated row).

Usage::

    constraint = RankingConstraint(tokenizer, reasoning=False, sid_wrap=False)
    processor = constraint.processor(candidate_sids_per_row, max_new_tokens=128)
    model.generate(**enc, do_sample=True, max_new_tokens=128, logits_processor=LogitsProcessorList([processor]))
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from gr2.llm.decoding import SidTrie
from gr2.prompts.parse import canonical_sid
from gr2.prompts.render import assistant_text
from gr2.prompts.sids import SID_BEGIN, SID_END

__all__ = ["AnswerFrame", "RankingConstraint", "RankingLogitsProcessor"]

#: Trie token that marks "the SID ends here" (never a real token id).
_SID_DONE = -1
_EXPLANATION, _FIRST, _SECOND = "\x00E\x00", "\x00A\x00", "\x00B\x00"


@dataclass(frozen=True)
class AnswerFrame:
    """The fixed text of an answer around its explanation and its SIDs."""

    opener: str
    """Text before the explanation (reasoning) or before the first SID."""
    closer: str
    """Text between the explanation and the first SID (``""`` without reasoning)."""
    separator: str
    """Text between two SIDs."""
    end: str
    """Text after the last SID (the end of the JSON object)."""

    @classmethod
    def of(cls, reasoning: bool) -> AnswerFrame:
        """The frame of :func:`gr2.prompts.render.assistant_text` (the SFT target), cut around
        placeholders (``json.dumps`` escapes NUL, so the placeholders are found escaped)."""
        text = assistant_text(_EXPLANATION, [_FIRST, _SECOND], reasoning=reasoning)
        first, second, expl = (_escaped(x) for x in (_FIRST, _SECOND, _EXPLANATION))
        head, tail = text.split(first)
        middle, end = tail.split(second)
        opener, closer = head.split(expl) if reasoning else (head, "")
        return cls(opener=opener, closer=closer, separator=middle, end=end)


def _escaped(placeholder: str) -> str:
    return placeholder.replace("\x00", "\\u0000")


# --------------------------------------------------------------------------- the explanation's tokens
@dataclass
class _ExplanationVocab:
    """Which tokens may be written inside the explanation string, and how each closing token ends it."""

    free: np.ndarray
    """Tokens without ``"``, ``\\`` or a special meaning."""
    content: np.ndarray
    """Tokens whose text (before the quote, for a closing token) is not only whitespace."""
    closing: np.ndarray
    """Tokens ``A"B`` that end the string and start the closer (``"B`` is a prefix of it)."""
    rest: dict[int, list[int]]
    """Closing token → the tokens that complete the closer after it."""
    reserve: int
    """Tokens that closing the explanation takes at most (a closing token and its rest)."""


def _explanation_vocab(tokenizer: Any, closer: str, encode: Any) -> _ExplanationVocab:
    n = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    free = np.zeros(n, dtype=bool)
    content = np.zeros(n, dtype=bool)
    closing = np.zeros(n, dtype=bool)
    rest: dict[int, list[int]] = {}
    rest_of: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        if i in special:
            continue
        quote = text.find('"')
        before = text if quote < 0 else text[:quote]
        content[i] = bool(before.strip())
        if "\\" in before:
            continue
        if quote < 0:
            free[i] = True
        elif closer.startswith(text[quote:]):
            closing[i] = True
            remainder = closer[len(text) - quote:]
            rest[i] = rest_of.setdefault(remainder, encode(remainder) if remainder else [])
    if not closing.any():
        raise ValueError(f"no token of the tokenizer starts the closer {closer!r}")
    reserve = 1 + max(len(r) for r in rest.values())
    return _ExplanationVocab(free=free, content=content, closing=closing, rest=rest, reserve=reserve)


# --------------------------------------------------------------------------- the constraint
class RankingConstraint:
    """The answer grammar of one tokenizer, tokenised once; :meth:`processor` makes a processor for
    one batch of rows.

    ``reasoning``: the answer holds an explanation first (:class:`AnswerFrame`). ``sid_wrap``: SIDs
    are written wrapped in ``<|sid_begin|>``/``<|sid_end|>`` (as ``PromptConfig.sid_wrap`` shows
    them). ``end_text``: what follows the JSON object (SFT's end of turn, e.g. ``<|im_end|>``;
    default the EOS token); it is cut after its first EOS token, where generation stops.
    """

    def __init__(self, tokenizer: Any, reasoning: bool, sid_wrap: bool = False, end_text: str | None = None) -> None:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no EOS token: a constrained answer must end with one")
        self.tokenizer = tokenizer
        self.reasoning = reasoning
        self.sid_wrap = sid_wrap
        self.eos_token_id = int(eos)
        frame = AnswerFrame.of(reasoning)
        self.opener = self._encode(frame.opener)
        self.separator = self._encode(frame.separator)
        end = self._encode(frame.end + (tokenizer.eos_token if end_text is None else end_text))
        if self.eos_token_id not in end:
            raise ValueError(f"end_text {end_text!r} does not hold the EOS token {tokenizer.eos_token!r}")
        self.end = end[:end.index(self.eos_token_id) + 1]
        self.explanation = _explanation_vocab(tokenizer, frame.closer, self._encode) if reasoning else None
        self._sids: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sid_tokens(self, sid: str) -> list[int]:
        """Token ids of ``sid`` as the answer writes it (cached)."""
        if sid not in self._sids:
            canon = canonical_sid(sid)
            self._sids[sid] = self._encode(f"{SID_BEGIN}{canon}{SID_END}" if self.sid_wrap else canon)
        return self._sids[sid]

    def ranking_length(self, candidate_sids: Sequence[str]) -> int:
        """Tokens from the first SID to the end of the answer (the same for every order)."""
        k = len(candidate_sids)
        return sum(len(self.sid_tokens(s)) for s in candidate_sids) + (k - 1) * len(self.separator) + len(self.end)

    def min_new_tokens(self, candidate_sids: Sequence[str]) -> int:
        """The shortest complete answer in tokens (with reasoning: a one-token explanation and the
        longest way to close it)."""
        explanation = 1 + self.explanation.reserve if self.explanation is not None else 0
        return len(self.opener) + explanation + self.ranking_length(candidate_sids)

    def processor(self, candidate_sids: Sequence[Sequence[str]], max_new_tokens: int) -> RankingLogitsProcessor:
        """A processor for one ``generate`` call whose row ``i`` ranks ``candidate_sids[i]``."""
        return RankingLogitsProcessor(self, candidate_sids, max_new_tokens)


# --------------------------------------------------------------------------- per-row automaton
class _Row:
    """Where one row's answer is: forced tokens, the explanation, inside an SID, or done."""

    def __init__(self, constraint: RankingConstraint, trie: SidTrie, ranking: int) -> None:
        self.constraint = constraint
        self.trie = trie
        self.ranking = ranking  # tokens from the first SID to the end (the same for every order)
        self.unused = trie.count.copy()  # unused items under each trie node
        self.k = len(trie)
        self.written = 0
        self.node = 0
        self.said = False  # the explanation holds a non-whitespace character
        self.forced: deque[int] = deque(constraint.opener)
        self.after = "explanation" if constraint.explanation is not None else "sid"
        self.phase = "forced"

    # -- allowed tokens --------------------------------------------------------------------------
    def allow(self, mask: torch.Tensor, left: int, vocab: dict[str, torch.Tensor]) -> None:
        """Set ``mask`` (the row's allowed tokens) with ``left`` tokens still to generate, this one
        included."""
        if self.phase == "forced":
            mask[self.forced[0]] = True
        elif self.phase == "sid":
            mask[self._sid_next()] = True
        elif self.phase == "explanation":
            self._allow_explanation(mask, left, vocab)
        else:  # done: the row is padded from here on
            mask[self.constraint.eos_token_id] = True

    def _frame(self) -> list[int]:
        return self.constraint.separator if self.written + 1 < self.k else self.constraint.end

    def _sid_next(self) -> list[int]:
        out = []
        for tok, child in zip(self.trie.child_tok[self.node], self.trie.child_node[self.node]):
            if self.unused[child] > 0:
                out.append(self._frame()[0] if tok == _SID_DONE else int(tok))
        return out

    def _allow_explanation(self, mask: torch.Tensor, left: int, vocab: dict[str, torch.Tensor]) -> None:
        need = self.constraint.explanation.reserve + self.ranking  # tokens that closing and ranking may take
        if self.said:
            mask |= vocab["closing"]
            if left - 1 >= need:
                mask |= vocab["free"]
            return
        # nothing said yet: keep room for one more token with content before the closer
        mask |= vocab["closing"] & vocab["content"]
        if left - 1 >= need:
            mask |= vocab["free"] & vocab["content"]
        if left - 2 >= need:
            mask |= vocab["free"]

    # -- following the sampled token -------------------------------------------------------------
    def advance(self, tok: int) -> None:
        """Move past ``tok``, the token sampled at the previous step."""
        if self.phase == "forced":
            self._expect(tok == self.forced[0], tok)
            self.forced.popleft()
            if not self.forced:
                self._enter(self.after)
        elif self.phase == "sid":
            self._advance_sid(tok)
        elif self.phase == "explanation":
            self._advance_explanation(tok)

    def _expect(self, ok: bool, tok: int) -> None:
        if not ok:
            raise RuntimeError(f"constrained decoding: token {tok} was not allowed in phase {self.phase!r} "
                               "(another logits processor or the sampler overrode the mask)")

    def _force(self, tokens: Sequence[int], then: str) -> None:
        self.forced = deque(tokens)
        self.after = then
        self.phase = "forced"
        if not self.forced:
            self._enter(then)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.node = 0

    def _advance_sid(self, tok: int) -> None:
        children = self.trie.children[self.node]
        done = children.get(_SID_DONE)
        frame = self._frame()
        if done is not None and self.unused[done] > 0 and tok == frame[0]:
            node = done
            while node >= 0:  # the item is used: one fewer unused item under each ancestor
                self.unused[node] -= 1
                node = int(self.trie.parent[node]) if node > 0 else -1
            self.written += 1
            self._force(frame[1:], "sid" if self.written < self.k else "done")
            return
        child = children.get(tok)
        self._expect(child is not None and self.unused[child] > 0, tok)
        self.node = child

    def _advance_explanation(self, tok: int) -> None:
        vocab = self.constraint.explanation
        if vocab.closing[tok]:
            self._force(vocab.rest[tok], "sid")
            return
        self._expect(bool(vocab.free[tok]), tok)
        self.said = self.said or bool(vocab.content[tok])


# --------------------------------------------------------------------------- the processor
class RankingLogitsProcessor(LogitsProcessor):
    """transformers ``LogitsProcessor``: row ``i`` of the batch may only write a ranking of
    ``candidate_sids[i]`` (see the module docstring). ``steps`` counts the calls (0: generation
    never ran through it)."""

    def __init__(self, constraint: RankingConstraint, candidate_sids: Sequence[Sequence[str]],
                 max_new_tokens: int) -> None:
        self.constraint = constraint
        self.max_new_tokens = int(max_new_tokens)
        tries: dict[tuple[str, ...], SidTrie] = {}
        self.rows: list[_Row] = []
        for sids in candidate_sids:
            key = tuple(sids)
            if not key:
                raise ValueError("a row has no candidates to rank")
            shortest = constraint.min_new_tokens(key)
            if shortest > self.max_new_tokens:
                raise ValueError(f"max_new_tokens={self.max_new_tokens} cannot hold a complete answer for "
                                 f"{len(key)} candidates: it needs at least {shortest} tokens")
            if key not in tries:
                tries[key] = SidTrie([constraint.sid_tokens(s) for s in key], end_id=_SID_DONE)
            self.rows.append(_Row(constraint, tries[key], constraint.ranking_length(key)))
        self.steps = 0
        self._start: int | None = None
        self._vocab: dict[str, torch.Tensor] = {}

    def _vocab_masks(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """The explanation's token classes as boolean rows the width of ``scores`` (ids the tokenizer
        does not know, e.g. padded embedding rows, are never allowed)."""
        if not self._vocab and self.constraint.explanation is not None:
            v = scores.shape[-1]
            for name in ("free", "content", "closing"):
                flags = np.zeros(v, dtype=bool)
                src = getattr(self.constraint.explanation, name)[:v]
                flags[:len(src)] = src
                self._vocab[name] = torch.from_numpy(flags).to(scores.device)
        return self._vocab

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            if input_ids.shape[0] != len(self.rows):
                raise ValueError(f"{input_ids.shape[0]} rows are generated for {len(self.rows)} candidate lists "
                                 "(beam search and num_return_sequences > 1 are not supported)")
            self._start = input_ids.shape[1]
        else:
            for row, tok in zip(self.rows, input_ids[:, -1].tolist()):
                row.advance(int(tok))
        left = self.max_new_tokens - (input_ids.shape[1] - self._start)
        vocab = self._vocab_masks(scores)
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        for r, row in enumerate(self.rows):
            row.allow(allowed[r], left, vocab)
        self.steps += 1
        return scores.masked_fill(~allowed, float("-inf"))
