"""Render and parse semantic IDs as LLM tokens: ``<s_a_97><s_b_168><s_c_137><s_d_135>``.

Level ``l`` (0-based) uses the letter ``"abcdefghijklmnopqrstuvwxyz"[l]``; an SID is the
concatenation of one token per level, in level order (docs/method.md §3). Pure Python: the LLM stages
(vocabulary, prompts, output parsing) reuse it without importing torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SID_BEGIN = "<|sid_begin|>"
SID_END = "<|sid_end|>"
_TOKEN = re.compile(r"<s_([a-z])_(\d+)>")
_SID_RUN = re.compile(r"(?:<s_[a-z]_\d+>)+")


def sid_token(level: int, code: int) -> str:
    """The token of ``code`` at ``level`` (0-based), e.g. ``sid_token(1, 168) == "<s_b_168>"``."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level {level} out of range 0..{len(LEVEL_LETTERS) - 1}")
    if code < 0:
        raise ValueError(f"negative code {code} at level {level}")
    return f"<s_{LEVEL_LETTERS[level]}_{int(code)}>"


def render_sid(codes: Sequence[int], wrap: bool = False) -> str:
    """``(97, 168, 137, 135)`` → ``<s_a_97><s_b_168><s_c_137><s_d_135>``.

    ``wrap`` adds ``<|sid_begin|>`` / ``<|sid_end|>`` around it (the form shown to the LLM).
    """
    if len(codes) == 0:
        raise ValueError("an SID needs at least one code")
    body = "".join(sid_token(level, code) for level, code in enumerate(codes))
    return f"{SID_BEGIN}{body}{SID_END}" if wrap else body


def parse_sid(text: str) -> tuple[int, ...]:
    """Inverse of :func:`render_sid` (wrapping and surrounding whitespace allowed).

    Raises ``ValueError`` for anything else: a foreign character, a level out of order, a
    missing level.
    """
    s = text.strip()
    if s.startswith(SID_BEGIN) and s.endswith(SID_END):
        s = s[len(SID_BEGIN):-len(SID_END)]
    codes: list[int] = []
    pos = 0
    for m in _TOKEN.finditer(s):
        if m.start() != pos:
            raise ValueError(f"not an SID: {text!r} (unexpected text at {pos})")
        level = LEVEL_LETTERS.index(m.group(1))
        if level != len(codes):
            raise ValueError(f"not an SID: {text!r} (level '{m.group(1)}' where "
                             f"'{LEVEL_LETTERS[len(codes)]}' was expected)")
        codes.append(int(m.group(2)))
        pos = m.end()
    if pos != len(s) or not codes:
        raise ValueError(f"not an SID: {text!r}")
    return tuple(codes)


def iter_sids(text: str) -> Iterator[tuple[int, ...]]:
    """Every well-formed SID in free text, in order of appearance (malformed runs skipped)."""
    for m in _SID_RUN.finditer(text):
        try:
            yield parse_sid(m.group(0))
        except ValueError:
            continue


def sid_vocabulary(levels: int, codebook_size: int) -> list[str]:
    """All tokens an SID of ``levels`` levels can use, level by level (for the LLM vocabulary)."""
    return [sid_token(level, code) for level in range(levels) for code in range(codebook_size)]


def render_many(rows: Iterable[Sequence[int]]) -> list[str]:
    """:func:`render_sid` over many code tuples."""
    return [render_sid(r) for r in rows]
