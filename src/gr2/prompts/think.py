"""Think before you recommend: the three reasoning steps of RecZero's template (docs/method.md §10) as
tagged blocks in a fixed order. One definition for the rating task's answer (:mod:`gr2.prompts.rating`)
and the re-ranking explanation with ``PromptConfig.reasoning_format="think"``
(:mod:`gr2.prompts.render`, :mod:`gr2.prompts.parse`):

    <user_interests>what the user likes, read from the history</user_interests>
    <item_features>what the item(s) are</item_features>
    <compatibility>how well they fit the user's interests</compatibility>

:func:`scan_blocks` reads tagged blocks (one pass, linear in the text); :func:`structure_status`
checks the steps in a scan; :func:`parse_steps` does both for a text that must be exactly the three
steps. The statuses (:data:`STEP_STATUSES`), the first that applies:

* ``repeated`` — a block opened more than once;
* ``malformed`` — tags that do not pair up (a block left open, a close without an open, nesting);
* ``missing_step`` — a step absent or without a word in it;
* ``out_of_order`` — the blocks are not in the order above;
* ``extra_text`` — text outside the blocks (whitespace between them is fine);
* ``ok``.

Pure Python (no torch).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["STEP_STATUSES", "STEP_TAGS", "Scan", "StepsParse", "parse_steps", "scan_blocks", "steps_text",
           "structure_status"]

#: The three steps, in the order an answer must give them.
STEP_TAGS: tuple[str, str, str] = ("user_interests", "item_features", "compatibility")
STEP_STATUSES = ("ok", "repeated", "malformed", "missing_step", "out_of_order", "extra_text")

_WORD = re.compile(r"\w")


@functools.lru_cache(maxsize=16)
def _tag_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"<(/?)(" + "|".join(map(re.escape, names)) + r")>")


@dataclass(frozen=True)
class Scan:
    """What :func:`scan_blocks` found."""

    status: str | None
    """``repeated`` or ``malformed`` when the tags do not pair up (then nothing else is filled); else ``None``."""
    blocks: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    """Block name → (its index among the blocks found, its raw content)."""
    outside: Sequence[str] = ()
    """The text before, between and after the blocks."""


def scan_blocks(text: str, names: Sequence[str]) -> Scan:
    """The ``<name>...</name>`` blocks of ``text`` for each of ``names`` (other text, other tags
    included, is content or outside text)."""
    blocks: dict[str, tuple[int, str]] = {}
    outside, cursor, open_at = [], 0, None  # open_at: (name, end of its open tag)
    for m in _tag_pattern(tuple(names)).finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if name in blocks or (open_at and open_at[0] == name):
                return Scan("repeated")
            if open_at is not None:
                return Scan("malformed")
            outside.append(text[cursor:m.start()])
            open_at = (name, m.end())
        else:
            if open_at is None or open_at[0] != name:
                return Scan("malformed")
            blocks[name] = (len(blocks), text[open_at[1]:m.start()])
            open_at, cursor = None, m.end()
    if open_at is not None:
        return Scan("malformed")
    outside.append(text[cursor:])
    return Scan(None, blocks, outside)


def structure_status(scan: Scan, order: Sequence[str] = STEP_TAGS) -> str:
    """``missing_step``, ``out_of_order``, ``extra_text`` or ``ok`` for a scan whose tags pair up:
    every step of :data:`STEP_TAGS` present with a word in it, then the blocks of ``order`` (the steps,
    and whatever follows them in the answer, e.g. ``rating``) exactly in that order, then nothing but
    whitespace outside them."""
    if scan.status is not None:
        raise ValueError(f"the tags do not pair up ({scan.status})")
    if any(name not in scan.blocks or not _WORD.search(scan.blocks[name][1]) for name in STEP_TAGS):
        return "missing_step"
    if [scan.blocks[name][0] if name in scan.blocks else -1 for name in order] != list(range(len(order))):
        return "out_of_order"
    if any(part.strip() for part in scan.outside):
        return "extra_text"
    return "ok"


@dataclass(frozen=True)
class StepsParse:
    """What :func:`parse_steps` read."""

    status: str
    """One of :data:`STEP_STATUSES`."""
    steps: Mapping[str, str] = field(default_factory=dict)
    """The text of each step found, stripped."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_steps(text: str | None) -> StepsParse:
    """Check that ``text`` is exactly the three steps, in order (whitespace around them allowed)."""
    scan = scan_blocks(text or "", STEP_TAGS)
    if scan.status is not None:
        return StepsParse(scan.status)
    steps = {name: scan.blocks[name][1].strip() for name in STEP_TAGS if name in scan.blocks}
    return StepsParse(structure_status(scan), steps)


def steps_text(contents: Sequence[str], sep: str = "\n") -> str:
    """The three steps as tagged blocks (``contents`` in :data:`STEP_TAGS`' order), joined by ``sep``."""
    if len(contents) != len(STEP_TAGS):
        raise ValueError(f"expected {len(STEP_TAGS)} steps, got {len(contents)}")
    return sep.join(f"<{name}>{text}</{name}>" for name, text in zip(STEP_TAGS, contents))
