"""The serving API: load a trained re-ranker once, then re-rank (history, K candidates) requests.

::

    rr = Reranker.load("runs/beauty")                 # rl/model, else sft/model, else midtrain/model
    res = rr.rerank(["B00A", "B00B"], ["B01", "B02", "B03"], mode="direct", timeout=2.0)
    res.order, res.scores, res.valid, res.repaired, res.fallback

Items are named by the catalogue's ``raw_id`` (what the client's own systems know), or given inline
as :class:`~gr2.serve.catalogue.Item` with their text when the catalogue lacks them (cold start).

Modes:

* ``"direct"`` — the reasoning-free model (docs/method.md §9, "reasoning internalisation"): no text is
  generated; every candidate is scored by the log-probability of its SID as the first
  recommendation, all K in one forward pass (:mod:`gr2.llm.scoring`). Always a valid ranking, with
  scores.
* ``"reasoning"`` — the model writes ``{"explanation": ..., "recommendations": [...]}`` (greedy);
  the answer is parsed and, when it is not a valid permutation, repaired
  (:func:`gr2.prompts.parse.parse_output`: keep the first mention of each recognised candidate,
  append the missing ones in input order). No scores.

Whatever happens, the answer is a permutation of the input candidates. Flags say how it was made:
``valid`` — the model's own answer was a complete, valid ranking; ``repaired`` — the answer had
errors and was repaired (at least one candidate was recognised); ``fallback`` — the input order was
returned, with ``fallback_reason`` ``"deadline"`` (the request's deadline passed first),
``"unparseable"`` (no candidate could be read from the answer) or ``"error"`` (the computation
failed). Requests are queued to one model worker that batches them dynamically
(:mod:`gr2.serve.batching`); beyond ``max_inflight`` requests :class:`Overloaded` is raised.

This module does not import FastAPI (:mod:`gr2.serve.http` is the HTTP layer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gr2.llm.scoring import (
    DirectEncoder,
    PositionPrior,
    PrefixCache,
    ScoreInput,
    common_prefix,
    direct_prompt_ids,
    direct_ranking,
    score_direct,
)
from gr2.prompts.chat import apply_chat_template
from gr2.prompts.items import trained_prompt
from gr2.prompts.render import (
    ItemText,
    PromptConfig,
    RenderedPrompt,
    build_messages,
)
from gr2.serve.batching import Batcher, Overloaded
from gr2.serve.catalogue import Catalogue, ColdStartUnavailable, Item
from gr2.serve.config import ServeConfig
from gr2.serve.engine import generate_answers

log = logging.getLogger(__name__)

__all__ = ["MODES", "STAGES", "Item", "Overloaded", "Pending", "RequestError", "RerankResult", "Reranker",
           "ServeConfig", "find_model"]

Mode = Literal["direct", "reasoning"]
MODES: tuple[str, ...] = ("direct", "reasoning")
STAGES: tuple[str, ...] = ("rl", "sft", "midtrain")
"""Model folders of a run directory, latest stage first (``<run>/<stage>/model``)."""
Ref = str | Item
Loc = tuple[str | int, ...]


@dataclass
class RerankResult:
    """A ranking of the request's candidates, best first, and how it was made (module docstring)."""

    order: list[str]
    """Candidate ids, best first: always a permutation of the request's candidates."""
    indices: list[int]
    """The same ranking as positions in the request's candidate list."""
    scores: list[float] | None
    """Direct mode: log-probability of each ranked candidate (aligned with ``order``); else ``None``."""
    reasoning: str | None
    """Reasoning mode: the explanation, or the raw answer when none could be read."""
    valid: bool
    repaired: bool
    fallback: bool
    fallback_reason: str | None
    mode: str
    latency_s: float
    prompt_tokens: int
    """Tokens of the templated prompt (direct mode: including the answer's opening)."""


class RequestError(ValueError):
    """An invalid request; ``errors`` lists ``(location, message)`` pairs, e.g.
    ``(("candidates", 3), "unknown item id 'X' ...")``."""

    def __init__(self, errors: Sequence[tuple[Loc, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in self.errors))


@dataclass
class _Prepared:
    mode: str
    candidates: list[str]
    rendered: RenderedPrompt
    ids: list[int]
    paths: list[list[int]]
    t0: float = field(default_factory=time.monotonic)


class Pending:
    """A submitted request: wait for it with :meth:`result` or ``await`` :meth:`result_async`; both
    return the input order flagged ``fallback`` once the deadline passes."""

    def __init__(self, reranker: Reranker, prep: _Prepared, future: Future, deadline: float) -> None:
        self._reranker, self._prep, self.future, self.deadline = reranker, prep, future, deadline

    def _expired(self) -> RerankResult:
        self.future.cancel()  # not computed if it has not started yet
        return self._reranker._fallback(self._prep, "deadline")

    def result(self) -> RerankResult:
        try:
            return self.future.result(timeout=max(self.deadline - time.monotonic(), 0.0))
        except TimeoutError:
            return self._expired()

    async def result_async(self) -> RerankResult:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.future),
                                          timeout=max(self.deadline - time.monotonic(), 0.0))
        except TimeoutError:
            return self._expired()


def find_model(run_dir: str | Path, stage: str | None = None) -> tuple[Path, str]:
    """``(model folder, stage)`` of a run directory: ``stage`` if given, else the latest of
    rl → sft → midtrain that has a ``model/`` folder."""
    run = Path(run_dir)
    for s in [stage] if stage else STAGES:
        if s not in STAGES:
            raise ValueError(f"unknown stage {s!r}; expected one of {STAGES}")
        if (run / s / "model" / "config.json").is_file():
            return run / s / "model", s
    want = f"{stage}/model" if stage else " or ".join(f"{s}/model" for s in STAGES)
    raise FileNotFoundError(f"{run}: no {want} (train a model first, or pass a model folder)")


class Reranker:
    """A loaded model + catalogue that answers re-ranking requests (module docstring).

    ``prompt`` is how prompts are rendered (its ``reasoning`` field is set per mode); it must match
    what the model was trained on. Use :meth:`load` to build one from a run directory.
    """

    def __init__(self, model: Any, tokenizer: Any, catalogue: Catalogue, prompt: PromptConfig | None = None,
                 config: ServeConfig | None = None, name: str = "model", prior: PositionPrior | None = None) -> None:
        self.model, self.tokenizer, self.catalogue = model, tokenizer, catalogue
        self.prior = prior
        self.config = config or ServeConfig()
        self.name = name
        base = prompt or PromptConfig(item_format="compact")
        self.prompts = {m: dataclasses.replace(base, reasoning=(m == "reasoning")) for m in MODES}
        self._encoder = DirectEncoder(tokenizer, self.prompts["direct"].sid_wrap)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad = int(pad or 0)
        self._max_tokens = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        model.eval()
        self.prefixes: dict[str, PrefixCache] = (
            {m: PrefixCache(model, self._shared_prefix(m)) for m in MODES} if self.config.prefix_cache else {})
        c = self.config
        self._batcher: Batcher[_Prepared, RerankResult] = Batcher(
            self._run, {"direct": c.max_batch_direct, "reasoning": c.max_batch_reasoning}, c.max_inflight,
            expired=lambda p: self._fallback(p, "deadline"), failed=lambda p, e: self._fallback(p, "error"))

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        stage: str | None = None,
        items: str | Path | None = None,
        sids: str | Path | None = None,
        sid_tokenizer: str | Path | None = None,
        prompt: PromptConfig | None = None,
        config: ServeConfig | None = None,
        device: str | None = None,
        dtype: str = "float32",
        embed_fn: Any = None,
    ) -> Reranker:
        """From a run directory (model: ``stage``, else rl → sft → midtrain; ``data/items.parquet``,
        ``sid/sids.parquet``, ``sid/tokenizer.pt``; the prompt settings the stage recorded in the
        manifest, else the compact SID-only prompt), or from a bare model folder with explicit
        ``items`` and ``sids`` parquet files (and optionally ``sid_tokenizer`` for cold start)."""
        from gr2.llm.registry import load as load_model

        src = Path(source)
        config = config or ServeConfig()
        if (src / "config.json").is_file():
            if items is None or sids is None:
                raise ValueError(f"{src} is a model folder: pass items= and sids= (parquet files) too")
            model_dir, name = src, src.name
        else:
            model_dir, stage = find_model(src, stage)
            name = f"{src.name}/{stage}"
            items = items or src / "data" / "items.parquet"
            sids = sids or src / "sid" / "sids.parquet"
            if sid_tokenizer is None and (src / "sid" / "tokenizer.pt").is_file():
                sid_tokenizer = src / "sid" / "tokenizer.pt"
            prompt = prompt or trained_prompt(src, stage)
        catalogue = Catalogue.from_files(items, sids, sid_tokenizer, embed_fn, config.max_new_items)
        model, tokenizer = load_model(model_dir, dtype=dtype, device=device)
        return cls(model, tokenizer, catalogue, prompt, config, name, PositionPrior.load(model_dir))

    # -- prompts --------------------------------------------------------------------------------
    def _prompt(self, mode: str, history: Sequence[ItemText], cands: Sequence[ItemText]) -> tuple[RenderedPrompt, list[int]]:
        rendered = build_messages(history, cands, self.prompts[mode])
        if mode == "direct":
            return rendered, direct_prompt_ids(self.tokenizer, rendered.messages)
        text = apply_chat_template(self.tokenizer, rendered.messages, add_generation_prompt=True, fallback="chatml")
        return rendered, list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _shared_prefix(self, mode: str) -> list[int]:
        """Tokens every prompt of ``mode`` starts with: the common prefix of two prompts that differ
        from the start of the user message on, less one token (a BPE merge may cross the border)."""
        a = ItemText(0, "<s_a_0><s_b_0><s_c_0><s_d_0>")
        b = ItemText(1, "<s_a_1><s_b_1><s_c_1><s_d_1>")
        _, x = self._prompt(mode, [], [a, b])
        _, y = self._prompt(mode, [a, b, a], [b, a])
        return common_prefix([x, y]) or x[:1]

    def score_input(self, history: Sequence[str], candidates: Sequence[str]) -> ScoreInput:
        """The direct-mode model input for catalogue ids (to check or time the engine directly)."""
        hist = [self.catalogue.get(r) for r in history]
        cands = [self.catalogue.get(r) for r in candidates]
        if any(x is None for x in hist + cands):
            raise KeyError("score_input takes catalogue ids only")
        return ScoreInput(self._prompt("direct", hist, cands)[1], [self._encoder.path(c.sid) for c in cands])

    # -- requests -------------------------------------------------------------------------------
    def _resolve(self, history: Sequence[Ref], candidates: Sequence[Ref], mode: str,
                 timeout: float | None) -> tuple[list[ItemText], list[ItemText], float]:
        c = self.config
        errors: list[tuple[Loc, str]] = []
        if mode not in MODES:
            errors.append((("mode",), f"must be one of {list(MODES)}, got {mode!r}"))
        timeout = c.default_timeout_s if timeout is None else float(timeout)
        if not 0 < timeout <= c.max_timeout_s:
            errors.append((("timeout",), f"{timeout:g} s is outside (0, {c.max_timeout_s:g}] s"))
        if not c.min_candidates <= len(candidates) <= c.max_candidates:
            errors.append((("candidates",), f"{len(candidates)} candidates; K must be between "
                           f"{c.min_candidates} and {c.max_candidates}"))
        if len(history) > c.max_history_items:
            errors.append((("history",), f"{len(history)} items; at most {c.max_history_items} are accepted"))
        entries: list[tuple[Loc, str]] = []
        inline: dict[str, Item] = {}
        for part, refs in (("history", history), ("candidates", candidates)):
            for i, r in enumerate(refs):
                rid = r.id if isinstance(r, Item) else r
                if not isinstance(rid, str) or not rid:
                    errors.append(((part, i), f"expected a non-empty item id string or an Item, got {r!r}"))
                    continue
                if isinstance(r, Item):
                    inline.setdefault(rid, r)
                entries.append(((part, i), rid))
        first: dict[str, int] = {}
        for (part, i), rid in entries:
            if part == "candidates":
                if rid in first:
                    errors.append(((part, i), f"duplicate candidate {rid!r} (also at position {first[rid]})"))
                first.setdefault(rid, int(i))
        for loc, rid in entries:
            if rid not in self.catalogue and rid not in inline:
                errors.append((loc, f"unknown item id {rid!r}: not in the catalogue (send a new item inline "
                                    "with its text)"))
        if errors:
            raise RequestError(errors)
        if not self._batcher.has_room():  # refuse before any cold-start work
            raise self._overloaded()
        new = [it for rid, it in inline.items() if rid not in self.catalogue]
        if new:
            try:
                self.catalogue.add(new)
            except ColdStartUnavailable as exc:
                ids = {it.id for it in new}
                raise RequestError([(loc, str(exc)) for loc, rid in entries if rid in ids]) from None
        resolved = {rid: self.catalogue.get(rid) for _, rid in entries}
        hist = [resolved[rid] for (part, _), rid in entries if part == "history"]
        cands = [resolved[rid] for (part, _), rid in entries if part == "candidates"]
        return hist, cands, timeout  # type: ignore[return-value]

    def submit(self, history: Sequence[Ref], candidates: Sequence[Ref], mode: Mode = "direct",
               timeout: float | None = None) -> Pending:
        """Validate and queue a request (raises :class:`RequestError` or :class:`Overloaded`)."""
        t0 = time.monotonic()
        hist, cands, timeout = self._resolve(history, candidates, mode, timeout)
        rendered, ids = self._prompt(mode, hist, cands)
        paths = [self._encoder.path(c.sid) for c in cands] if mode == "direct" else []
        extra = sum(map(len, paths)) if mode == "direct" else self.config.max_new_tokens
        if self._max_tokens and len(ids) + extra > self._max_tokens:
            raise RequestError([(("history",), f"the prompt has {len(ids)} tokens (+{extra} to score or "
                                               f"generate); the model reads at most {self._max_tokens}")])
        ref_ids = [r.id if isinstance(r, Item) else r for r in candidates]
        prep = _Prepared(mode, ref_ids, rendered, ids, paths, t0)
        deadline = t0 + timeout
        try:
            return Pending(self, prep, self._batcher.submit(mode, prep, deadline), deadline)
        except Overloaded:
            raise self._overloaded() from None

    def _overloaded(self) -> Overloaded:
        return Overloaded(f"{self._batcher.in_flight} requests in flight (max_inflight "
                          f"{self.config.max_inflight}); retry later")

    def rerank(self, history: Sequence[Ref], candidates: Sequence[Ref], mode: Mode = "direct",
               timeout: float | None = None) -> RerankResult:
        """Re-rank ``candidates`` for a user with ``history`` (oldest first), waiting at most
        ``timeout`` seconds (default ``config.default_timeout_s``) before answering with the input
        order flagged ``fallback``. Raises :class:`RequestError` or :class:`Overloaded`."""
        return self.submit(history, candidates, mode, timeout).result()

    # -- the worker -----------------------------------------------------------------------------
    def _result(self, p: _Prepared, indices: list[int], **kw: Any) -> RerankResult:
        return RerankResult(order=[p.candidates[i] for i in indices], indices=indices, mode=p.mode,
                            latency_s=time.monotonic() - p.t0, prompt_tokens=len(p.ids), **kw)

    def _fallback(self, p: _Prepared, reason: str) -> RerankResult:
        return self._result(p, list(range(len(p.candidates))), scores=None, reasoning=None, valid=False,
                            repaired=False, fallback=True, fallback_reason=reason)

    def _run(self, mode: str, batch: list[_Prepared], deadlines: list[float]) -> list[RerankResult]:
        if mode == "direct":
            scored = score_direct(self.model, [ScoreInput(p.ids, p.paths) for p in batch], self.prefixes.get(mode),
                                  self._pad)
            out = []
            for p, model_scores in zip(batch, scored):
                scores, idx = direct_ranking(model_scores, p.rendered.presented, self.prompts["direct"].order,
                                             self.prior)
                out.append(self._result(p, idx, scores=[scores[i] for i in idx], reasoning=None, valid=True,
                                        repaired=False, fallback=False, fallback_reason=None))
            return out
        texts = generate_answers(self.model, self.tokenizer, [p.ids for p in batch], deadlines,
                                 self.config.max_new_tokens, self.prefixes.get(mode))
        now = time.monotonic()
        return [self._fallback(p, "deadline") if now >= d else self._read(p, t)
                for p, t, d in zip(batch, texts, deadlines)]

    def _read(self, p: _Prepared, text: str) -> RerankResult:
        parsed = p.rendered.parse(text)
        reasoning = parsed.explanation if parsed.explanation else text
        if parsed.ok:
            return self._result(p, list(parsed.order or []), scores=None, reasoning=reasoning, valid=True,
                                repaired=False, fallback=False, fallback_reason=None)
        if parsed.n_missing == len(p.candidates):
            res = self._fallback(p, "unparseable")
            res.reasoning = reasoning
            return res
        return self._result(p, list(parsed.repaired), scores=None, reasoning=reasoning, valid=False,
                            repaired=True, fallback=False, fallback_reason=None)

    # -- lifecycle ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Queue and cache counters (health checks, metrics)."""
        return {"model": self.name, "catalogue_items": self.catalogue.n_catalogue,
                "new_items": self.catalogue.n_new, "prefix_tokens": {m: len(c) for m, c in self.prefixes.items()},
                **self._batcher.stats()}

    def close(self) -> None:
        self._batcher.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
