"""Read a re-ranking answer back: extract the JSON, classify errors, repair the permutation.

:func:`parse_output` never raises on model output. It returns a :class:`ParseResult` with

* ``status`` — one of :data:`STATUSES`. When several problems apply, the first in this precedence
  wins: ``wrong_format`` > ``foreign`` > ``duplicate`` > ``missing`` (``ok`` when none applies):

  - ``wrong_format``: no JSON object with a ``recommendations`` list could be read (no JSON, broken
    or truncated JSON, ``recommendations`` absent or not a list), or ``require_explanation`` and the
    ``explanation`` is absent, not a string or empty;
  - ``foreign``: an entry is not one of the candidates (an unknown SID, a number outside 1..K, a
    malformed entry);
  - ``duplicate``: a candidate appears more than once;
  - ``missing``: a candidate does not appear.

* ``order`` — the ranking as pre-rank indices, a permutation of ``0..K-1``, **only** when
  ``status == "ok"``; ``None`` otherwise (rewards rely on it).
* ``steps_status`` — with ``reasoning_format="think"`` (the explanation written as the three tagged
  steps of :mod:`gr2.prompts.think`: user interests → item features → compatibility), how the
  explanation holds that structure: ``ok``, ``missing_step`` (no explanation, a step absent or empty),
  ``out_of_order``, ``extra_text`` (text outside the steps), ``repeated``, ``malformed``; ``None`` with the
  free-text explanation (``"free"``, the default). It does not change ``status``, which is about the
  ranking (and, with ``require_explanation``, a non-empty explanation): the ranking of an answer whose
  steps are out of order is still read. :attr:`ParseResult.reasoning_ok` — a non-empty explanation in
  the structure asked for — is what the RL format reward reads (:mod:`gr2.rl.dapo`) and what the
  trace sampler requires (:func:`gr2.traces.sampling.judge`).
* ``repaired`` — always a permutation of ``0..K-1`` (rank_llm's policy, docs/method.md §10): keep the
  first occurrence of each recognised candidate in the model's order, drop duplicates and foreign
  entries, then append the missing candidates in pre-rank order. When no JSON could be read, the
  ranking is recovered from the text (the SIDs, or a list of candidate numbers, after the last
  mention of "recommendation", else anywhere) — for ``repaired`` only; the status stays
  ``wrong_format``.

Accepted entries of ``recommendations``: SID strings (exact; spaces between SID tokens, missing or
extra ``<|sid_begin|>``/``<|sid_end|>`` wrappers and text around a single SID are tolerated),
candidate numbers 1..K (ints or strings like ``"3"``, ``"[3]"``, ``"#3"``, ``"C3"``) that refer to
the **presented** order (mapped through ``presented``), and objects with a ``sid`` (or ``id``,
``item``, ``candidate``) field. JSON extraction tolerates code fences, text before and after, trailing
commas, curly quotes and single-quoted (Python-literal) objects.

Pure Python (no torch).
"""

from __future__ import annotations

import ast
import bisect
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gr2.prompts.sids import SID_BEGIN, SID_END
from gr2.prompts.think import STEP_STATUSES, parse_steps

__all__ = [
    "REASONING_FORMATS",
    "STATUSES",
    "ParseResult",
    "parse_output",
    "error_counts",
    "identity_rate",
    "steps_counts",
    "canonical_sid",
]

Status = Literal["ok", "wrong_format", "duplicate", "missing", "foreign"]
#: All statuses; error precedence is wrong_format > foreign > duplicate > missing.
STATUSES: tuple[str, ...] = ("ok", "wrong_format", "foreign", "duplicate", "missing")
ReasoningFormat = Literal["free", "think"]
#: How the explanation is written: free text, or the three tagged steps of :mod:`gr2.prompts.think`.
REASONING_FORMATS: tuple[str, ...] = ("free", "think")


def check_reasoning_format(reasoning_format: str) -> None:
    """``ValueError`` unless ``reasoning_format`` is one of :data:`REASONING_FORMATS`."""
    if reasoning_format not in REASONING_FORMATS:
        raise ValueError(f"reasoning_format must be one of {REASONING_FORMATS}, got {reasoning_format!r}")


_TOKEN = re.compile(r"<s_([a-z])_(\d+)>")
# SID tokens with optional whitespace between them.
_SID_RUN = re.compile(r"<s_[a-z]_\d+>(?:\s*<s_[a-z]_\d+>)*")
_NUMBER = re.compile(
    r"^\s*(?:#|no\.?\s*|c|candidate\s*|item\s*)?[\[(]?\s*(\d{1,6})\s*[\])]?\s*[.:]?\s*$",
    re.IGNORECASE,
)
_NUM_LIST = re.compile(r"\[\s*(\d{1,6}(?:\s*,\s*\d{1,6})*)")
_REC_KEYS = ("recommendations", "recommendation")
_EXPL_KEYS = ("explanation",)
_ITEM_KEYS = ("sid", "item_sid", "id", "item", "item_id", "candidate")
_MAX_TEXT = 200_000  # characters of an answer that are looked at (the tail is kept)


@dataclass
class ParseResult:
    """The outcome of :func:`parse_output`.

    ``raw_ranking`` holds the entries of ``recommendations`` as the model wrote them (as strings).
    ``order`` is a permutation of pre-rank indices iff ``status == "ok"``; ``repaired`` is always
    one. ``n_duplicates`` counts repeated recognised entries, ``n_foreign`` unrecognised entries,
    ``n_missing`` the candidates appended by the repair. ``presented`` is the presentation used.
    ``steps_status``: the think structure of the explanation (``reasoning_format="think"``; one of
    :data:`gr2.prompts.think.STEP_STATUSES`), ``None`` when not checked.
    """

    status: Status
    explanation: str | None
    raw_ranking: list[str]
    order: list[int] | None
    repaired: list[int]
    n_duplicates: int = 0
    n_missing: int = 0
    n_foreign: int = 0
    presented: list[int] = field(default_factory=list)
    steps_status: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reasoning_ok(self) -> bool:
        """A non-empty explanation, in the three tagged steps when they were asked for."""
        return bool(self.explanation and self.explanation.strip()) and self.steps_status in (None, "ok")


# --------------------------------------------------------------------------- SIDs


def canonical_sid(text: str) -> str:
    """An SID string without wrappers or whitespace (the form candidates are compared in)."""
    return "".join(str(text).replace(SID_BEGIN, "").replace(SID_END, "").split())


def _split_sids(text: str) -> list[str]:
    """Every SID in ``text``, in order, in canonical form.

    Tokens may be separated by whitespace; a new SID starts wherever the level letter does not
    increase (so ``<s_a_1>..<s_d_4><s_a_5>..`` is two SIDs).
    """
    out: list[str] = []
    for run in _SID_RUN.finditer(text):
        cur: list[str] = []
        last = -1
        for m in _TOKEN.finditer(run.group(0)):
            level = ord(m.group(1)) - ord("a")
            if cur and level <= last:
                out.append("".join(cur))
                cur = []
            cur.append(m.group(0))
            last = level
        if cur:
            out.append("".join(cur))
    return out


# --------------------------------------------------------------------------- JSON extraction


_STRUCT = re.compile(r'[{}"\\]')  # the characters that matter for brace matching


def _object_spans(text: str, track_strings: bool = True) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of balanced ``{...}`` blocks at any depth (single linear pass).

    Double-quoted strings are skipped only inside a block (quotes in surrounding prose do not
    matter); an unclosed ``{`` does not hide the blocks that follow it.
    """
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    in_str = False
    skip = -1  # index of a character escaped by a backslash inside a string
    for m in _STRUCT.finditer(text):
        i = m.start()
        ch = text[i]
        if in_str:
            if i == skip:
                continue
            if ch == "\\":
                skip = i + 1
            elif ch == '"':
                in_str = False
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                spans.append((stack.pop(), i + 1))
        elif ch == '"' and stack and track_strings:
            in_str = True
    return spans


_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


_LITERAL_MAX = 8_000
"""Longest block handed to ``ast.literal_eval`` (single-quoted objects); real answers are < 2,000."""
_LITERAL_BUDGET = 32_000
"""Characters ``ast.literal_eval`` may read per answer in all: Python's parser is superlinear on
nested input (a crafted 18 KB answer of nested single-quoted objects took ~1 s before this cap,
and the time grew ~quadratically with its length), so the whole parse stays linear in the answer."""


def _loads_lenient(s: str, budget: list[int] | None = None) -> Any:
    """``json.loads`` with fallbacks; raises ``ValueError`` when nothing works. ``budget`` (a
    one-element list) is what ``ast.literal_eval`` may still read; it is decreased."""
    variants = [s]
    t = s.translate(_CURLY)
    if t != s:
        variants.append(t)
    u = _TRAILING_COMMA.sub(r"\1", t)
    if u != t:
        variants.append(u)
    for v in variants:
        try:
            return json.loads(v, strict=False)
        except Exception:  # noqa: BLE001 - RecursionError etc. on hostile input
            pass
    budget = [_LITERAL_BUDGET] if budget is None else budget
    if "'" in t and len(t) <= min(_LITERAL_MAX, budget[0]):
        budget[0] -= len(t)
        try:
            return ast.literal_eval(t)  # single-quoted, Python-literal objects
        except Exception:  # noqa: BLE001
            pass
    raise ValueError("no JSON")


def _get(d: Mapping[Any, Any], keys: Sequence[str]) -> tuple[bool, Any]:
    for k, v in d.items():
        if isinstance(k, str) and k.strip().lower() in keys:
            return True, v
    return False, None


def _find_rec_dict(obj: Any, depth: int = 0) -> dict[Any, Any] | None:
    """The first dict (breadth-first) holding a ``recommendations`` key."""
    queue = [obj]
    seen = 0
    while queue and seen < 1000:
        cur = queue.pop(0)
        seen += 1
        if isinstance(cur, dict):
            if _get(cur, _REC_KEYS)[0]:
                return cur
            queue.extend(cur.values())
        elif isinstance(cur, list):
            queue.extend(cur)
    return None


def _extract_object(text: str) -> dict[Any, Any] | None:
    """The answer object: among the balanced ``{...}`` blocks that parse and hold a
    ``recommendations`` key, the one ending last (the outermost on ties)."""
    low = text.lower()
    hits = [m.start() for m in re.finditer("recommend", low)]
    if not hits:
        return None

    def mentions(a: int, b: int) -> bool:  # "recommend" inside text[a:b], without slicing (O(log n))
        i = bisect.bisect_left(hits, a)
        return i < len(hits) and hits[i] + len("recommend") <= b

    budget = [_LITERAL_BUDGET]
    for track in (True, False):
        spans = [sp for sp in _object_spans(text, track) if mentions(*sp)]
        # latest end first; on the same end the longer (outer) block first
        spans.sort(key=lambda sp: (-sp[1], sp[0]))
        for a, b in spans[:200]:
            try:
                obj = _loads_lenient(text[a:b], budget)
            except ValueError:
                continue
            found = _find_rec_dict(obj)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- entries


def _as_number(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x):
            return int(x)
        return None
    if isinstance(x, str):
        m = _NUMBER.match(x)
        if m:
            return int(m.group(1))
    return None


class _Resolver:
    def __init__(self, candidate_sids: Sequence[str], presented: Sequence[int]):
        self.k = len(candidate_sids)
        self.presented = list(presented)
        self.index: dict[str, int] = {}
        for i, s in enumerate(candidate_sids):
            self.index.setdefault(canonical_sid(s), i)

    def raw(self, x: Any) -> str:
        if isinstance(x, str):
            return x.strip()
        if isinstance(x, dict):
            ok, v = _get(x, _ITEM_KEYS)
            if ok and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                return str(v).strip()
        try:
            return json.dumps(x, ensure_ascii=False)
        except Exception:  # noqa: BLE001
            return str(x)

    def sid(self, s: str) -> int | None:
        """A string naming a candidate by SID (or ``None``)."""
        hit = self.index.get(canonical_sid(s))
        if hit is not None:
            return hit
        found = _split_sids(s)
        if len(found) == 1:
            return self.index.get(found[0])
        return None

    def number(self, n: int | None) -> int | None:
        if n is not None and 1 <= n <= self.k:
            return self.presented[n - 1]
        return None

    def resolve(self, x: Any, depth: int = 0) -> int | None:
        """The pre-rank index an entry names, or ``None`` (foreign)."""
        if isinstance(x, str):
            hit = self.sid(x)
            if hit is not None:
                return hit
            return self.number(_as_number(x))
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return self.number(_as_number(x))
        if isinstance(x, dict) and depth == 0:
            ok, v = _get(x, _ITEM_KEYS)
            if ok:
                return self.resolve(v, depth + 1)
        return None


def _repair(resolved: Iterable[int | None], k: int) -> tuple[list[int], int, int, int]:
    """rank_llm's repair: ``(repaired, n_duplicates, n_missing, n_foreign)``."""
    seen: set[int] = set()
    out: list[int] = []
    dup = foreign = 0
    for r in resolved:
        if r is None:
            foreign += 1
        elif r in seen:
            dup += 1
        else:
            seen.add(r)
            out.append(r)
    missing = [i for i in range(k) if i not in seen]
    return out + missing, dup, len(missing), foreign


def _fallback_entries(text: str) -> list[Any]:
    """Entries recovered from text with no readable JSON (for ``repaired`` only)."""
    low = text.lower()
    pos = low.rfind("recommendation")
    regions = [text[pos:]] if pos >= 0 else []
    regions.append(text)
    for region in regions:
        sids = _split_sids(region)
        if sids:
            return list(sids)
        m = _NUM_LIST.search(region)
        if m:
            return [int(t) for t in re.findall(r"\d+", m.group(1))]
    return []


# --------------------------------------------------------------------------- public API


def _check_inputs(candidate_sids: Sequence[str], presented: Sequence[int] | None) -> list[int]:
    k = len(candidate_sids)
    if presented is None:
        return list(range(k))
    pres = [int(p) for p in presented]
    if sorted(pres) != list(range(k)):
        raise ValueError(f"presented must be a permutation of 0..{k - 1}, got {pres}")
    return pres


def _parse(text: Any, candidate_sids: Sequence[str], presented: list[int],
           require_explanation: bool, reasoning_format: str = "free") -> ParseResult:
    k = len(candidate_sids)
    res = _Resolver(candidate_sids, presented)
    if text is None:
        text = ""
    elif not isinstance(text, str):
        text = str(text)
    if len(text) > _MAX_TEXT:
        text = text[-_MAX_TEXT:]

    obj = _extract_object(text)
    explanation: str | None = None
    entries: list[Any] | None = None
    wrong = obj is None
    if obj is not None:
        _, recs = _get(obj, _REC_KEYS)
        has_expl, expl = _get(obj, _EXPL_KEYS)
        if isinstance(expl, str):
            explanation = expl
        if isinstance(recs, list):
            entries = recs
        else:
            wrong = True
            if isinstance(recs, str):
                entries = list(_split_sids(recs)) or None
        if require_explanation and (not has_expl or not isinstance(expl, str) or not expl.strip()):
            wrong = True
    if entries is None:
        entries = _fallback_entries(text)

    resolved = [res.resolve(x) for x in entries]
    repaired, dup, missing, foreign = _repair(resolved, k)
    if wrong:
        status: Status = "wrong_format"
    elif foreign:
        status = "foreign"
    elif dup:
        status = "duplicate"
    elif missing:
        status = "missing"
    else:
        status = "ok"
    return ParseResult(
        status=status,
        explanation=explanation,
        raw_ranking=[res.raw(x) for x in entries],
        order=list(repaired) if status == "ok" else None,
        repaired=repaired,
        n_duplicates=dup,
        n_missing=missing,
        n_foreign=foreign,
        presented=list(presented),
        steps_status=parse_steps(explanation).status if reasoning_format == "think" else None,
    )


def parse_output(
    text: Any,
    candidate_sids: Sequence[str],
    presented: Sequence[int] | None = None,
    require_explanation: bool = True,
    reasoning_format: ReasoningFormat = "free",
) -> ParseResult:
    """Parse a re-ranking answer against ``candidate_sids`` (pre-rank order).

    ``presented[j]`` is the pre-rank index of the j-th candidate shown to the model
    (:attr:`gr2.prompts.render.RenderedPrompt.presented`; ``None``: the pre-rank order); it maps
    answers given as candidate numbers. ``reasoning_format="think"`` checks the explanation's three
    tagged steps (``steps_status``). Raises ``ValueError`` only for invalid *arguments*
    (``presented`` not a permutation of ``0..K-1``, an unknown ``reasoning_format``); never on model
    output.
    """
    pres = _check_inputs(candidate_sids, presented)
    check_reasoning_format(reasoning_format)
    try:
        return _parse(text, candidate_sids, pres, require_explanation, reasoning_format)
    except Exception:  # noqa: BLE001 - last line of defence: model output never raises
        k = len(candidate_sids)
        return ParseResult(status="wrong_format", explanation=None, raw_ranking=[], order=None,
                           repaired=list(range(k)), n_missing=k, presented=pres,
                           steps_status="missing_step" if reasoning_format == "think" else None)


def error_counts(results: Iterable[ParseResult]) -> dict[str, int]:
    """Number of results per status (every status present, zeros included)."""
    c = Counter(r.status for r in results)
    return {s: int(c.get(s, 0)) for s in STATUSES}


def steps_counts(results: Iterable[ParseResult]) -> dict[str, int]:
    """Number of results per think-structure status (:data:`gr2.prompts.think.STEP_STATUSES`, zeros
    included) among those whose steps were checked (``reasoning_format="think"``); empty when none was."""
    c = Counter(r.steps_status for r in results if r.steps_status is not None)
    return {s: int(c.get(s, 0)) for s in STEP_STATUSES} if c else {}


def identity_rate(results: Iterable[ParseResult],
                  relative_to: Literal["prerank", "presented"] = "prerank") -> float:
    """Share of ``ok`` results whose order equals the identity (``nan`` with no ``ok`` result).

    ``relative_to="prerank"``: the answer reproduces the pre-ranker's order.
    ``"presented"``: the answer reproduces the order the candidates were shown in (position copying;
    differs from the former only with a shuffled presentation).
    """
    n = hits = 0
    for r in results:
        if r.status != "ok" or r.order is None:
            continue
        n += 1
        ref = list(range(len(r.order))) if relative_to == "prerank" else list(r.presented)
        if relative_to == "presented" and not ref:
            ref = list(range(len(r.order)))
        hits += int(list(r.order) == ref)
    return hits / n if n else float("nan")
