"""Render a re-ranking example (user history + K candidates) as chat messages (docs/method.md §5).

The prompt follows the five principles of docs/method.md §5:

1. **Role and task** — the system message makes the model an e-commerce recommendation analyst that
   re-ranks a list of candidates retrieved by a recommender.
2. **Collaborative context** — the user message holds the whole history (oldest first, numbered) and
   all K candidates at once.
3. **Domain-knowledge priming** — optional purchase-sequence heuristics (``PromptConfig.domain_priming``).
4. **Guidelines** — every item is cited by its SID; the output is one JSON object whose
   ``recommendations`` list holds exactly the K candidate SIDs, each once, best first.
5. **Structured reasoning** — three steps: patterns in the history → complementary / next categories →
   match the candidates and rank. With ``reasoning_format="think"`` (RecZero's think-before-recommend
   template, docs/method.md §10) the explanation is written as the three tagged steps of
   :mod:`gr2.prompts.think` — ``<user_interests>`` → ``<item_features>`` → ``<compatibility>`` — inside
   the JSON's ``"explanation"`` string, a structure the parser checks (``ParseResult.steps_status``).

Items are rendered the same way in the history and in the candidate block (``item_format``). The
output schema is shown with placeholders only: no numeric example list such as ``[3, 1, ...]``,
which small models copy (docs/method.md §5, "measured here").

Layout: system (fixed for a given :class:`PromptConfig`, so its KV cache is shared by all requests)
→ user: history → candidates → a short closing instruction that restates K.

With ``order="shuffled"`` the candidates are shown in a permutation that is a pure function of
``(cfg.seed, rng_key)`` (a hash, never the global RNG); :attr:`RenderedPrompt.presented` maps the
shown positions back to pre-rank indices and :func:`gr2.prompts.parse.parse_output` uses it to map
an answer given as candidate numbers back to the pre-rank order.

Pure Python (no torch): importable by reward functions and data tooling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gr2.prompts.parse import (
    ParseResult,
    ReasoningFormat,
    check_reasoning_format,
    parse_output,
)
from gr2.prompts.sids import SID_BEGIN, SID_END
from gr2.prompts.think import STEP_TAGS, steps_text

__all__ = [
    "DOMAIN_PRIMING",
    "ItemText",
    "PromptConfig",
    "RenderedPrompt",
    "build_messages",
    "render_item",
    "presentation_order",
    "system_message",
    "assistant_text",
]


#: Domain-knowledge priming texts (principle 3), selected by ``PromptConfig.domain``.
DOMAIN_PRIMING: dict[str, str] = {
    "beauty": (
        "Domain knowledge (beauty and personal care purchases):\n"
        "- Purchases follow routines: shampoo → conditioner → styling product; cleanser → toner → "
        "serum → moisturiser → sunscreen; primer → foundation → powder → setting spray; "
        "base coat → nail colour → top coat → remover.\n"
        "- A recent purchase makes its complements likely next (a hair dryer → heat protectant or "
        "brushes; a foundation → sponges or brushes; a nail polish → top coat or other shades).\n"
        "- Consumables are bought again: the same product type, brand or line can come back.\n"
        "- Users stay consistent in brand, skin or hair type, price level and style (e.g. "
        "natural/organic, salon-professional, fragrance family).\n"
        "- The most recent purchases say the most about the next one; older ones describe "
        "long-term taste."
    ),
    "generic": (
        "Domain knowledge (purchase sequences):\n"
        "- A recent purchase makes complementary items and the next step of the same task likely.\n"
        "- Consumables and favourite product lines are bought again.\n"
        "- Users stay consistent in brand, style and price level.\n"
        "- The most recent items say the most about the next one; older ones describe "
        "long-term taste."
    ),
}


@dataclass(frozen=True)
class ItemText:
    """What the prompt shows of one item.

    ``sid`` is the semantic ID string, e.g. ``<s_a_97><s_b_168><s_c_137><s_d_135>`` (4 levels, or 5
    with a collision level); ``categories`` is the category path, most general first (any iterable
    of strings; stored as a tuple).
    """

    item_id: int
    sid: str
    title: str = ""
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        cats = self.categories
        if cats is None:
            cats = ()
        elif isinstance(cats, str):
            cats = (cats,)
        object.__setattr__(self, "categories", tuple(str(c) for c in cats))
        object.__setattr__(self, "title", "" if self.title is None else str(self.title))
        if not isinstance(self.sid, str) or not self.sid.strip():
            raise ValueError(f"item {self.item_id}: empty SID")


@dataclass(frozen=True)
class PromptConfig:
    """How a re-ranking prompt is rendered.

    Attributes
    ----------
    item_format:
        ``"full"`` shows ``SID | title | category path`` for every item; ``"compact"`` shows the SID
        only. The same format is used in the history and in the candidate block.
    max_history:
        Keep only the most recent ``max_history`` history items (``None``: all of them).
    reasoning:
        ``True``: ask for ``{"explanation": ..., "recommendations": [...]}`` with the three-step
        reasoning written in ``explanation``. ``False``: ranking-only variant
        ``{"recommendations": [...]}`` (the model is told not to write an explanation).
    reasoning_format:
        How the explanation is written (with ``reasoning``): ``"free"`` — free text following the
        three steps; ``"think"`` — RecZero's think-before-recommend template: exactly three tagged
        steps, ``<user_interests>…</user_interests><item_features>…</item_features>
        <compatibility>…</compatibility>`` (:data:`THINK_STEPS`), which the parser checks
        (``ParseResult.steps_status``; the RL format reward counts an answer without them as not
        well-formed). Ignored without ``reasoning``.
    max_explanation_words:
        Soft length limit stated in the prompt for the explanation (``None``: no limit stated).
    domain_priming:
        Include the domain-knowledge block (principle 3).
    domain:
        Key of :data:`DOMAIN_PRIMING` used when ``priming_text`` is not given.
    priming_text:
        Custom priming text; overrides ``domain``.
    order:
        ``"prerank"`` shows the candidates in the pre-ranker's order; ``"shuffled"`` in a permutation
        determined by ``(seed, rng_key)`` (see :func:`presentation_order`).
    seed:
        Seed of the shuffled presentation.
    number_candidates:
        Prefix candidates with ``[1]``..``[K]`` (the parser maps such numbers back through the
        presentation); ``False`` uses ``-`` bullets.
    max_title_chars:
        Titles longer than this are cut (with ``…``); ``None`` keeps them whole.
    sid_wrap:
        Show SIDs wrapped in ``<|sid_begin|>``/``<|sid_end|>`` (the paper's rendering, for a
        vocabulary that has those tokens).
    instructions:
        ``"full"``: the system message states all five principles (role, input, reasoning steps,
        guidelines, output schema; 387 SmolLM2 tokens for compact ranking-only prompts) — what a
        model that has not been trained on the task needs (a teacher, a zero-shot baseline).
        ``"short"``: the task and the output schema in two sentences (73 tokens, plus the priming
        block when enabled) — for a student that learns the task from its fine-tuning data, where
        the full instructions would be half of every training example and of every prefill.
    """

    item_format: Literal["full", "compact"] = "full"
    max_history: int | None = 50
    reasoning: bool = True
    reasoning_format: ReasoningFormat = "free"
    max_explanation_words: int | None = 200
    domain_priming: bool = True
    domain: str = "beauty"
    priming_text: str | None = None
    order: Literal["prerank", "shuffled"] = "shuffled"
    seed: int = 0
    number_candidates: bool = True
    max_title_chars: int | None = 120
    sid_wrap: bool = False
    instructions: Literal["full", "short"] = "full"

    def __post_init__(self) -> None:
        if self.instructions not in ("full", "short"):
            raise ValueError(f"instructions must be 'full' or 'short', got {self.instructions!r}")
        if self.item_format not in ("full", "compact"):
            raise ValueError(f"item_format must be 'full' or 'compact', got {self.item_format!r}")
        if self.order not in ("prerank", "shuffled"):
            raise ValueError(f"order must be 'prerank' or 'shuffled', got {self.order!r}")
        check_reasoning_format(self.reasoning_format)
        if self.max_history is not None and self.max_history < 0:
            raise ValueError(f"max_history must be >= 0 or None, got {self.max_history}")
        if self.max_explanation_words is not None and self.max_explanation_words < 1:
            raise ValueError("max_explanation_words must be >= 1 or None")
        if self.max_title_chars is not None and self.max_title_chars < 1:
            raise ValueError("max_title_chars must be >= 1 or None")
        if self.domain_priming and self.priming_text is None and self.domain not in DOMAIN_PRIMING:
            raise ValueError(f"unknown domain {self.domain!r} (known: {sorted(DOMAIN_PRIMING)}); "
                             "give priming_text or set domain_priming=False")

    @property
    def priming(self) -> str | None:
        """The priming block in use, or ``None``."""
        if not self.domain_priming:
            return None
        return self.priming_text if self.priming_text is not None else DOMAIN_PRIMING[self.domain]

    @property
    def answer_reasoning_format(self) -> ReasoningFormat:
        """The format the answer's explanation is held to: ``reasoning_format`` with ``reasoning``,
        ``"free"`` without (a ranking-only answer has no explanation to check). What the rendered
        prompt, its parser and the RL format reward use."""
        return self.reasoning_format if self.reasoning else "free"

    @property
    def think(self) -> bool:
        """Whether the answer's explanation must be the three tagged steps (``reasoning_format="think"``
        with ``reasoning``)."""
        return self.answer_reasoning_format == "think"


@dataclass
class RenderedPrompt:
    """A rendered prompt and what is needed to read the answer back.

    ``presented[j]`` is the pre-rank index of the j-th candidate shown (0-based), so candidate
    number ``n`` in the prompt (1-based) is pre-rank candidate ``presented[n - 1]``.
    ``candidate_sids`` are in pre-rank order, ``shown_sids`` in presentation order.
    """

    messages: list[dict[str, str]]
    presented: list[int]
    candidate_sids: list[str]
    shown_sids: list[str]
    history_shown: int
    history_total: int
    reasoning: bool = True
    candidate_ids: list[int] = field(default_factory=list)
    reasoning_format: ReasoningFormat = "free"
    """The prompt config's :attr:`PromptConfig.answer_reasoning_format` (``"free"`` without
    reasoning); ``"think"``: the explanation must be the three tagged steps (checked by :meth:`parse`)."""

    @property
    def k(self) -> int:
        return len(self.candidate_sids)

    @property
    def number_to_prerank(self) -> dict[int, int]:
        """Candidate number as shown (1-based) → pre-rank index (0-based)."""
        return {j + 1: p for j, p in enumerate(self.presented)}

    @property
    def n_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)

    def approx_tokens(self) -> int:
        """Rough token count (characters / 4), before any chat-template overhead."""
        return (self.n_chars + 3) // 4

    def parse(self, text: Any, require_explanation: bool | None = None) -> ParseResult:
        """:func:`parse_output` against this prompt's candidates and presentation."""
        req = self.reasoning if require_explanation is None else require_explanation
        return parse_output(text, self.candidate_sids, self.presented, require_explanation=req,
                            reasoning_format=self.reasoning_format)


# --------------------------------------------------------------------------- items


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _wrap(sid: str) -> str:
    s = sid.strip()
    if s.startswith(SID_BEGIN) and s.endswith(SID_END):
        return s
    return f"{SID_BEGIN}{s}{SID_END}"


def render_item(item: ItemText, cfg: PromptConfig) -> str:
    """One item as shown in the prompt (same format for history and candidates)."""
    sid = _wrap(item.sid) if cfg.sid_wrap else item.sid.strip()
    if cfg.item_format == "compact":
        return sid
    parts = [sid]
    title = _clean(item.title)
    if cfg.max_title_chars is not None and len(title) > cfg.max_title_chars:
        title = title[: cfg.max_title_chars - 1].rstrip() + "…"
    if title:
        parts.append(title)
    path = " > ".join(c for c in (_clean(c) for c in item.categories) if c)
    if path:
        parts.append(path)
    return " | ".join(parts)


def _resolve(items: Iterable[Any], lookup: Mapping[int, ItemText] | None, what: str) -> list[ItemText]:
    out: list[ItemText] = []
    for x in items:
        if isinstance(x, ItemText):
            out.append(x)
        elif lookup is not None:
            try:
                out.append(lookup[int(x)])
            except (KeyError, TypeError, ValueError) as exc:
                raise KeyError(f"{what}: unknown item {x!r}") from exc
        else:
            raise TypeError(f"{what}: expected ItemText (or item ids with items=...), got {type(x).__name__}")
    return out


# --------------------------------------------------------------------------- presentation


def presentation_order(k: int, cfg: PromptConfig, rng_key: Any = None) -> list[int]:
    """Presentation order as pre-rank indices: ``presented[j]`` = pre-rank index shown j-th.

    ``"prerank"``: the identity. ``"shuffled"``: indices sorted by
    ``blake2b(f"{seed}|{rng_key}|{i}")`` — deterministic per ``(seed, rng_key)`` across processes
    and Python versions, independent of any global RNG. Use e.g. ``rng_key=f"{example_id}:{attempt}"``.
    """
    if cfg.order == "prerank":
        return list(range(k))
    prefix = f"{int(cfg.seed)}|{'' if rng_key is None else rng_key}|".encode()

    def key(i: int) -> bytes:
        return hashlib.blake2b(prefix + str(i).encode(), digest_size=16).digest()

    return sorted(range(k), key=key)


# --------------------------------------------------------------------------- messages

_RANKING = ('"recommendations": ["<SID of the best candidate>", "<SID of the next best>", '
            '..., "<SID of the least likely candidate>"]')
_SCHEMA_REASONING = '{"explanation": "<your three-step reasoning, citing items by SID>", ' + _RANKING + "}"
_SCHEMA_RANKING = "{" + _RANKING + "}"
#: What each think step holds (``reasoning_format="think"``), in :data:`gr2.prompts.think.STEP_TAGS`' order.
THINK_STEPS: tuple[tuple[str, str], ...] = tuple(zip(STEP_TAGS, (
    "what the user buys: recurring categories, product types, brands and needs, and the latest purchases",
    "what the candidates are, and which are the complementary or next-step items this user needs",
    "how well each candidate fits the user's interests, citing it by SID, best first",
)))
_SCHEMA_THINK = '{"explanation": "' + steps_text(["..."] * len(STEP_TAGS), sep="") + '", ' + _RANKING + "}"
_THINK_SHORT = ("Think before you recommend: in \"explanation\", the user's interests, then what the candidates "
                "are, then how well each fits the user, as the three tagged steps shown (the ... between a "
                "step's tags is its text).")


def _schema(cfg: PromptConfig) -> str:
    """The output format shown (placeholders only)."""
    if not cfg.reasoning:
        return _SCHEMA_RANKING
    return _SCHEMA_THINK if cfg.think else _SCHEMA_REASONING


def system_message(cfg: PromptConfig) -> str:
    """The system message: identical for every request rendered with ``cfg`` (KV-cache friendly)."""
    schema = _schema(cfg)
    if cfg.instructions == "short":
        task = ("Re-rank the candidate items so that the one this user is most likely to purchase next "
                "comes first. Reply with one JSON object that lists the SID of every candidate exactly once:\n"
                + schema + (f"\n{_THINK_SHORT}" if cfg.think else ""))
        return f"{cfg.priming.strip()}\n\n{task}" if cfg.priming else task
    blocks: list[str] = []
    # (1) role and task
    blocks.append(
        "You are an e-commerce recommendation analyst. A recommender system has retrieved a short "
        "list of candidate items for a user. Your task is to re-rank ALL of these candidates so "
        "that the item the user is most likely to purchase next comes first."
    )
    # (2) what the input holds
    if cfg.item_format == "full":
        fmt = "its semantic ID (SID), its title and its category path, as: SID | title | category path"
    else:
        fmt = "its semantic ID (SID) only"
    blocks.append(
        "You will see the user's purchase history (numbered, oldest first, the last one is the most "
        f"recent) and the candidate items. Every item is shown by {fmt}. An SID is a sequence of "
        "tokens such as <s_a_N><s_b_N><s_c_N><s_d_N>; items whose SIDs share leading tokens are similar."
    )
    # (3) domain knowledge
    if cfg.priming:
        blocks.append(cfg.priming.strip())
    # (5) structured reasoning
    steps = (
        "1. History patterns: what the user buys — recurring categories, product types, brands and "
        "needs, and what was bought most recently.\n"
        "2. Next needs: which complementary or next-step categories the user is likely to need next, "
        "given those patterns.\n"
        "3. Match and rank: compare every candidate with steps 1 and 2 and order all candidates from "
        "most to least likely to be purchased next."
    )
    limit = (f" Keep it under {cfg.max_explanation_words} words."
             if cfg.max_explanation_words is not None else "")
    if cfg.think:
        tagged = steps_text([what for _, what in THINK_STEPS])
        blocks.append("Think before you recommend, in three steps, and write them in \"explanation\" as "
                      "exactly these three tagged blocks, in this order, with nothing around them:\n" + tagged
                      + "\n" + ("Cite items by their SIDs." + limit).strip())
    elif cfg.reasoning:
        blocks.append("Reason in three steps and write them in \"explanation\":\n" + steps
                      + "\n" + ("Cite items by their SIDs." + limit).strip())
    else:
        blocks.append("Decide in three steps, silently:\n" + steps + "\n"
                      "Do not write any explanation or reasoning: output the ranking only.")
    # (4) guidelines and output constraints
    guide = [
        "Guidelines:",
        "- Cite every item by its SID, copied exactly as shown (all of its tokens), never by its "
        "position number or title.",
        "- \"recommendations\" must contain the SID of every candidate exactly once: no SID that is "
        "not a candidate, no repeats, none left out. Order: best first.",
        "- Reply with one JSON object and nothing else: no text before or after it.",
    ]
    blocks.append("\n".join(guide))
    tags = "; the step tags are written as shown, the ... between them replaced by each step" if cfg.think else ""
    blocks.append(f"Output format (the <...> parts are placeholders{tags}):\n" + schema)
    return "\n\n".join(blocks)


def build_messages(
    history_items: Sequence[Any],
    candidate_items: Sequence[Any],
    cfg: PromptConfig | None = None,
    rng_key: Any = None,
    *,
    items: Mapping[int, ItemText] | None = None,
) -> RenderedPrompt:
    """Chat messages (system + user) for one re-ranking example.

    ``history_items`` (oldest first) and ``candidate_items`` (pre-rank order, best first) are
    :class:`ItemText` objects, or item ids resolved through ``items`` (item_id → ItemText).
    ``rng_key`` picks the shuffled presentation (e.g. ``f"{example_id}:{attempt}"``).
    Candidate SIDs must be distinct (the answer is read back by SID).
    """
    cfg = cfg or PromptConfig()
    history = _resolve(history_items, items, "history")
    cands = _resolve(candidate_items, items, "candidates")
    k = len(cands)
    if k == 0:
        raise ValueError("no candidates to rank")
    sids = [c.sid.strip() for c in cands]
    canon = [s.replace(SID_BEGIN, "").replace(SID_END, "").replace(" ", "") for s in sids]
    if len(set(canon)) != k:
        raise ValueError("candidate SIDs must be distinct")

    total = len(history)
    if cfg.max_history is not None:
        history = history[-cfg.max_history:] if cfg.max_history > 0 else []
    presented = presentation_order(k, cfg, rng_key)

    lines: list[str] = []
    n = len(history)
    if n == 0:
        lines.append("Purchase history: none (a new user).")
    else:
        head = f"Purchase history ({n} items, oldest first; item {n} is the most recent"
        if n < total:
            head += f"; the {n} most recent of {total}"
        lines.append(head + "):")
        lines.extend(f"{i}. {render_item(it, cfg)}" for i, it in enumerate(history, start=1))
    lines.append("")
    order_note = ", in random order" if cfg.order == "shuffled" else ""
    lines.append(f"Candidates ({k} items{order_note}):")
    for j, p in enumerate(presented, start=1):
        bullet = f"[{j}]" if cfg.number_candidates else "-"
        lines.append(f"{bullet} {render_item(cands[p], cfg)}")
    lines.append("")
    steps = "Follow the three steps, then reply" if cfg.reasoning else "Reply"
    lines.append(
        f"Re-rank all {k} candidates for this user. {steps} with the JSON object only; "
        f"\"recommendations\" must list the SIDs of all {k} candidates above, each exactly once, "
        "best first."
    )
    messages = [
        {"role": "system", "content": system_message(cfg)},
        {"role": "user", "content": "\n".join(lines)},
    ]
    return RenderedPrompt(
        messages=messages,
        presented=presented,
        candidate_sids=sids,
        shown_sids=[sids[p] for p in presented],
        history_shown=n,
        history_total=total,
        reasoning=cfg.reasoning,
        candidate_ids=[int(c.item_id) for c in cands],
        reasoning_format=cfg.answer_reasoning_format,
    )


# --------------------------------------------------------------------------- targets


def assistant_text(
    explanation: str | None,
    ranked_sids: Sequence[str],
    reasoning: bool = True,
    wrap: bool = False,
) -> str:
    """The target assistant message (SFT): one JSON line, ``explanation`` first, then
    ``recommendations`` (``reasoning=False``: ``recommendations`` only; ``explanation`` ignored).

    ``wrap`` wraps each SID in ``<|sid_begin|>``/``<|sid_end|>``.
    """
    recs = [_wrap(s) if wrap else str(s).strip() for s in ranked_sids]
    if not reasoning:
        return json.dumps({"recommendations": recs}, ensure_ascii=False)
    if explanation is None or not str(explanation).strip():
        raise ValueError("reasoning=True needs a non-empty explanation")
    return json.dumps({"explanation": str(explanation).strip(), "recommendations": recs},
                      ensure_ascii=False)

