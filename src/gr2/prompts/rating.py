"""The rating task's prompt and answer format: "think before you rate" (RecZero, docs/method.md §10).

The model sees the user's rated history (oldest first, each item with its rating) and one more item,
and answers in exactly this structure (docs/rating.md):

    <user_interests>what the user likes and dislikes, read from their ratings</user_interests>
    <item_features>what the item is: genres, era, kind</item_features>
    <compatibility>how well the item fits the user's interests</compatibility>
    <rating>a number from 1 to 5</rating>

:func:`parse_rating` reads an answer (a pure function, linear in the text) and gives one status: the
first two are found while the tags are scanned, the others are checked in this order:

* ``repeated`` — a block opened more than once (writing several ratings hedges: no rating counts);
* ``malformed`` — tags that do not pair up (a block left open, a close without an open, nesting);
* ``missing_rating`` — no ``<rating>`` block;
* ``not_a_number`` — the rating block holds anything but one decimal number (``4``, ``3.5``, ``1e9``);
* ``out_of_range`` — a number outside [1, 5] (or infinite);
* ``missing_step`` — one of the three steps is absent or has no word in it;
* ``out_of_order`` — the four blocks are not in the order above;
* ``extra_text`` — text outside the blocks;
* ``ok``.

The rating is read (``ParsedRating.rating``) for the last three statuses too, so a reward can still
score how close it is while withholding the format credit. The three steps, their tags and the checks
of the structure are :mod:`gr2.prompts.think`'s (shared with the re-ranking prompt's ``think`` format).
Pure Python (no torch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gr2.prompts.think import STEP_TAGS, scan_blocks, steps_text, structure_status

__all__ = ["RATING_MAX", "RATING_MIN", "STATUSES", "STEPS", "ParsedRating", "answer_text", "parse_rating",
           "rating_messages"]

RATING_MIN, RATING_MAX = 1.0, 5.0
#: The three reasoning steps, in the order the answer must give them (tag, what it holds).
STEPS: tuple[tuple[str, str], ...] = tuple(zip(STEP_TAGS, (
    "what the user likes and dislikes, read from their ratings",
    "what the {noun} is: genres, era, kind",
    "how well the {noun} fits the user's interests",
)))
BLOCKS = (*STEP_TAGS, "rating")
STATUSES = ("ok", "repeated", "malformed", "missing_rating", "not_a_number", "out_of_range", "missing_step",
            "out_of_order", "extra_text")
#: Statuses whose answer still carries a usable rating.
RATED = ("ok", "missing_step", "out_of_order", "extra_text")

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class ParsedRating:
    """What :func:`parse_rating` read from one answer."""

    status: str
    """One of :data:`STATUSES`."""
    rating: float | None = None
    """The rating, in [1, 5], when the status is in :data:`RATED`; else ``None``."""
    steps: Mapping[str, str] = field(default_factory=dict)
    """The text of each block found (``user_interests``, ``item_features``, ``compatibility``)."""

    @property
    def format_ok(self) -> bool:
        return self.status == "ok"


def parse_rating(text: str) -> ParsedRating:
    """Read an answer in the format of the module docstring (whitespace around blocks is allowed)."""
    scan = scan_blocks(text, BLOCKS)
    if scan.status is not None:  # repeated, malformed
        return ParsedRating(scan.status)
    blocks = scan.blocks
    steps = {name: blocks[name][1].strip() for name in STEP_TAGS if name in blocks}
    if "rating" not in blocks:
        return ParsedRating("missing_rating", steps=steps)
    raw = blocks["rating"][1].strip()
    if not _NUMBER.fullmatch(raw):
        return ParsedRating("not_a_number", steps=steps)
    value = float(raw)
    if not (math.isfinite(value) and RATING_MIN <= value <= RATING_MAX):
        return ParsedRating("out_of_range", steps=steps)
    return ParsedRating(structure_status(scan, BLOCKS), value, steps)


def answer_text(steps: Mapping[str, str], rating: object) -> str:
    """A well-formed answer (tests, documentation): the three steps, then the rating."""
    return steps_text([steps[name] for name in STEP_TAGS]) + f"\n<rating>{rating}</rating>"


def _item_line(title: str, categories: Sequence[str]) -> str:
    return f"{title} [{', '.join(categories)}]" if categories else title


def rating_messages(history: Sequence[tuple[str, Sequence[str], float]], item: tuple[str, Sequence[str]],
                    noun: str = "movie") -> list[dict[str, str]]:
    """Chat messages asking for a rating: ``history`` holds ``(title, categories, rating)`` oldest
    first, ``item`` is ``(title, categories)``. The format is shown with placeholders only (no
    example rating a small model could copy)."""
    template = steps_text([what.format(noun=noun) for _, what in STEPS])
    system = (
        f"You predict how a user will rate a {noun}, from {RATING_MIN:g} (hated it) to {RATING_MAX:g} "
        "(loved it). Think before you answer, in exactly this structure:\n"
        f"{template}\n<rating>one number from {RATING_MIN:g} to {RATING_MAX:g}</rating>")
    lines = [f"{i}. {_item_line(t, c)}: {r:g}" for i, (t, c, r) in enumerate(history, 1)]
    user = ("The user's ratings, oldest first:\n" + "\n".join(lines)
            + f"\n\n{noun.capitalize()} to rate: {_item_line(*item)}")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
