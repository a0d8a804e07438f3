"""The evidence teacher's prose: :func:`render` writes the claims (:mod:`gr2.traces.facts`) as the
three steps of docs/method.md §5. Phrasing variants are picked by a hash of the example id (never the
global RNG) so a student does not learn one fixed sentence. With ``think`` (the prompt's
``reasoning_format="think"``) the three steps are the tagged blocks of :mod:`gr2.prompts.think` —
history patterns as ``<user_interests>``, the next categories and the candidates in them as
``<item_features>``, the ranking with each candidate's evidence as ``<compatibility>`` — so traces,
and the SFT student, write the structure the parser checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from gr2.prompts.think import steps_text
from gr2.traces.facts import Claim

__all__ = ["render"]

_LABELS = (("1.", "2.", "3."), ("Step 1:", "Step 2:", "Step 3:"), ("Patterns:", "Next needs:", "Ranking:"))

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "history_category": ("{count} of the {n} purchases are {cat}, most recently {subs}.",
                         "the user keeps buying {cat} ({count} of {n}: {subs}).",
                         "{cat} dominates the history ({count} of {n} items, e.g. {subs})."),
    "latest_category": ("The latest purchase, {subs}, is {cat}.",
                        "Most recent: {subs} ({cat}).",
                        "The last item bought, {subs}, is in {cat}."),
    "no_history": ("no purchase history is shown.", "the user has no history yet."),
    "no_category": ("the history items carry no category.", "no category is known for the history."),
    "next_category": ("after {subs}, training users most often bought {cat} next ({count} of {total}).",
                      "{cat} is the usual next step: {count} of {total} purchases right after {subs}.",
                      "purchases that followed {subs} in training were most often {cat} "
                      "({count} of {total})."),
    "no_followups": ("no purchase follows {subs} in the training data, so the history's own "
                     "categories lead.",
                     "the training data hold no follow-up of {subs}; the history's categories lead."),
    "no_next": ("the recent items give no category signal.", "no next category stands out."),
    "candidates_none": ("No candidate is in {cat}.", "None of the candidates is in {cat}."),
    "candidates_all": ("Candidates in {cat}: {subs}.", "{subs} {be} in {cat}."),
    "candidates_some": ("{count} candidates are in {cat}, led by {subs}.",
                        "{count} candidates fit {cat}, best {subs}."),
    "rank_first": ("{c} comes first: {ev}.", "{c} ranks first: {ev}.", "First {c}: {ev}."),
    "rank_next": ("Then {c}: {ev}.", "After it, {c}: {ev}.", "{c} comes next: {ev}."),
    "rank_last": ("{c} goes last: {ev}.", "Last, {c}: {ev}.", "{c} ranks last: {ev}."),
    "transition": ("bought right after {h} {n} {times} in training",
                   "{n} training {purchases} directly after {h}",
                   "it followed {h} {n} {times} in training sequences"),
    "transition_none": ("never bought right after {h} in training",
                        "no training purchase directly after {h}"),
    "shared_category": ("same {cat} as {h}", "shares {cat} with {h}"),
    "title_similarity": ("title close to {h} ({words}cosine {cos})",
                         "text similar to {h} ({words}cosine {cos})"),
    "popularity": ("{n} training {purchases} overall", "{n} {purchases} in the training data"),
}

_STEP1 = ("history_category", "latest_category")
_STEP2 = ("next_category", "no_followups", "candidates_in_category")


def _pick(example_id: str, slot: str, n: int) -> int:
    """A phrasing variant: a stable hash of (example id, slot), independent of any global RNG."""
    digest = hashlib.blake2b(f"{example_id}|{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def render(claims: Sequence[Claim], ranked_sids: Sequence[str], n_history: int, root_depth: int,
           example_id: str, think: bool = False) -> str:
    """The three-step explanation of ``claims`` (as :meth:`~gr2.traces.evidence.EvidenceTeacher.claims` orders them);
    ``ranked_sids``: the candidates best first; ``n_history``: history items shown; ``root_depth``:
    leading category levels not worth printing; ``think``: the steps as the tagged blocks of
    :mod:`gr2.prompts.think` instead of labelled sentences."""

    def say(slot: str, key: str | None = None, shift: int = 0, **kw: Any) -> str:
        options = _TEMPLATES[slot]
        return options[(_pick(example_id, key or slot, len(options)) + shift) % len(options)].format(**kw)

    def cat(prefix: Sequence[str]) -> str:
        levels = list(prefix[root_depth:]) or list(prefix)
        return " > ".join(levels[-2:])

    labels = _LABELS[_pick(example_id, "labels", len(_LABELS))]

    step1 = []
    for c in (c for c in claims if c.kind in _STEP1):
        if c.kind == "history_category":
            prefix, count, n = c.value
            step1.append(say(c.kind, cat=cat(prefix), count=count, n=n, subs=", ".join(c.subjects)))
        else:
            step1.append(say(c.kind, cat=cat(c.value), subs=c.subjects[0]))
    if not step1:
        step1.append(say("no_category" if n_history else "no_history"))

    step2 = []
    for c in (c for c in claims if c.kind in _STEP2):
        if c.kind == "next_category":
            prefix, count, total = c.value
            step2.append(say(c.kind, cat=cat(prefix), count=count, total=total, subs=c.subjects[0]))
        elif c.kind == "no_followups":
            step2.append(say(c.kind, subs=", ".join(c.subjects)))
        else:
            prefix, count = c.value
            slot = "candidates_none" if count == 0 else "candidates_all" if count == len(c.subjects) \
                else "candidates_some"
            step2.append(say(slot, cat=cat(prefix), count=count, subs=", ".join(c.subjects),
                             be=_plural(count, "is", "are")))
    if not step2:
        step2.append(say("no_next"))

    step3 = []
    evidence: dict[str, list[Claim]] = {}
    for c in claims:
        if c.kind in ("shared_category", "title_similarity", "popularity"):
            evidence.setdefault(c.subjects[0], []).append(c)
        elif c.kind == "transition":
            evidence.setdefault(c.subjects[1], []).append(c)
    for rank, csid in enumerate(ranked_sids):
        if csid not in evidence:
            continue
        phrases = [_phrase(e, say, cat, f"{csid}|{e.kind}") for e in evidence[csid]]
        ev = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1]
        slot = "rank_first" if rank == 0 else "rank_last" if rank == len(ranked_sids) - 1 else "rank_next"
        step3.append(say(slot, shift=rank, c=csid, ev=ev))  # consecutive ranks, different openings

    steps = (step1, step2, step3)
    if think:  # every step must hold a word (gr2.prompts.think): the ranking itself when no fact is left
        step3 = step3 or ([say("rank_first", c=ranked_sids[0], ev="the ranker's score")] if ranked_sids else
                          ["No candidate to rank."])
        return steps_text([_cap(" ".join(parts)) for parts in (step1, step2, step3)], sep=" ")
    return " ".join(f"{label} {_cap(' '.join(parts))}" for label, parts in zip(labels, steps))


def _phrase(claim: Claim, say: Callable[..., str], cat: Callable[[Sequence[str]], str], key: str) -> str:
    """One piece of candidate evidence as a phrase."""
    if claim.kind == "transition":
        n, h = int(claim.value), claim.subjects[0]
        if n == 0:
            return say("transition_none", key, h=h)
        return say("transition", key, h=h, n=n, times=_plural(n, "time", "times"),
                   purchases=_plural(n, "purchase", "purchases"))
    if claim.kind == "shared_category":
        return say("shared_category", key, cat=cat(claim.value), h=claim.subjects[1])
    if claim.kind == "title_similarity":
        cos, words = claim.value
        quoted = "".join(f'"{w}", ' for w in words)
        return say("title_similarity", key, h=claim.subjects[1], words=quoted, cos=f"{cos:.2f}")
    n = int(claim.value)
    return say("popularity", key, n=n, purchases=_plural(n, "purchase", "purchases"))
