"""Facts about the data for the evidence teacher (:mod:`gr2.traces.evidence`) and their checks.

The data the claims speak about (:class:`Facts`: titles, category paths, the evidence sequences and
independent recounts of them), the checkable claims (:class:`Claim`), their re-check against the data
(:func:`verify_claims`, with plain ``Counter`` recounts instead of the teacher's feature tables), and
the honest inputs: which sequences a list may take statistics from (:func:`evidence_sequences`) and
which training lists the teacher may answer (:func:`newest_position_lists`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gr2.data.splits import Split
from gr2.rerank import FeatureBuilder

__all__ = [
    "Claim",
    "Facts",
    "evidence_sequences",
    "title_words",
    "verify_claims",
]

ClaimKind = Literal[
    "history_category",  # (prefix, count, n): `count` of the `n` history items lie under `prefix`
    "latest_category",  # prefix: the latest history item lies under it
    "next_category",  # (prefix, count, total): `count` of the `total` training transitions out of a
    # history item go to items under `prefix`
    "no_followups",  # 0: no training transition leaves any of these history items
    "candidates_in_category",  # (prefix, count): `count` candidates lie under `prefix` (subjects: some)
    "transition",  # int: training transitions history item -> candidate
    "shared_category",  # prefix: the longest common category prefix of a candidate and a history item
    "title_similarity",  # (cosine rounded to 2 decimals, shared title words): TF-IDF of title + categories
    # (as the re-ranker's features) of a candidate vs a history item
    "popularity",  # int: occurrences of the candidate in the training sequences
]

_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class Claim:
    """One checkable fact. ``subjects`` are SIDs (history and/or candidate items, see
    :data:`ClaimKind` for each kind's subjects and value); category prefixes are tuples of levels."""

    kind: ClaimKind
    subjects: tuple[str, ...]
    value: Any


# --------------------------------------------------------------------------- the data
def _text(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)


def _path(x: Any) -> tuple[str, ...]:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ()
    return tuple(str(c) for c in x)


def title_words(title: str) -> list[str]:
    """Content words of a title, in order, once each (letters only, no English stop words): what a
    ``title_similarity`` claim may quote as shared."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = (w.lower() for w in _WORD.findall(title))
    return list(dict.fromkeys(w for w in words if w not in ENGLISH_STOP_WORDS))


@dataclass
class Facts:
    """The data the claims speak about (index = item id) and its independent recounts.

    ``sequences`` are the evidence sequences (:func:`evidence_sequences`); ``tfidf`` is the
    row-normalised TF-IDF matrix of the feature builder (cosine = dot product of two rows).
    """

    sids: list[str]
    titles: list[str]
    paths: list[tuple[str, ...]]
    sequences: list[list[int]]
    tfidf: sp.csr_matrix
    root_depth: int = field(init=False)

    def __post_init__(self) -> None:
        self.root_depth = _root_depth(self.paths)

    @classmethod
    def from_frames(cls, items: pd.DataFrame, sids: Sequence[str], sequences: Sequence[Sequence[int]],
                    features: FeatureBuilder) -> Facts:
        """``items`` as in ``data/items.parquet``; ``sids[item_id]``; ``features`` fitted on ``sequences``."""
        n = features.n_items
        if len(sids) < n:
            raise ValueError(f"{len(sids)} SIDs for {n} items")
        titles, paths = [""] * n, [()] * n
        cats = items["categories"].tolist() if "categories" in items.columns else [None] * len(items)
        for i, t, c in zip(items["item_id"].tolist(), items["title"].tolist(), cats):
            titles[int(i)], paths[int(i)] = _text(t), _path(c)
        return cls(list(sids), titles, paths, [list(map(int, s)) for s in sequences], features.tfidf)

    @cached_property
    def sid_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.sids)}

    @cached_property
    def follows(self) -> dict[int, Counter[int]]:
        """``follows[a][b]`` = consecutive pairs ``a -> b`` in the sequences (counted afresh)."""
        out: dict[int, Counter[int]] = {}
        for s in self.sequences:
            for a, b in zip(s, s[1:]):
                out.setdefault(a, Counter())[b] += 1
        return out

    @cached_property
    def word_items(self) -> Counter[str]:
        """Number of items whose title has each word: rarer shared words say more."""
        return Counter(w for t in self.titles for w in title_words(t))

    def shared_words(self, a: int, b: int, n: int = 2) -> tuple[str, ...]:
        """The ``n`` rarest title words of ``a`` that ``b``'s title also has (ties: order in ``a``)."""
        other = set(title_words(self.titles[b]))
        common = [w for w in title_words(self.titles[a]) if w in other]
        return tuple(sorted(common, key=lambda w: self.word_items[w])[:n])

    @cached_property
    def occurrences(self) -> Counter[int]:
        return Counter(i for s in self.sequences for i in s)

    def under(self, item: int, prefix: tuple[str, ...]) -> bool:
        return len(prefix) > 0 and self.paths[item][: len(prefix)] == prefix

    def cosine(self, a: int, b: int) -> float:
        return float(self.tfidf[a].multiply(self.tfidf[b]).sum())


def _root_depth(paths: Sequence[tuple[str, ...]]) -> int:
    """Leading category levels shared by most of the catalogue (e.g. ``Beauty``): they say nothing."""
    depth = 0
    while True:
        top = Counter(p[: depth + 1] for p in paths if len(p) > depth).most_common(1)
        if not top or top[0][1] * 2 <= len(paths):
            return depth
        depth += 1


def _lcp(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


# --------------------------------------------------------------------------- verification
def verify_claims(claims: Sequence[Claim], facts: Facts, history: Sequence[int],
                  candidates: Sequence[int]) -> list[str]:
    """Re-check every claim of one example against the data; one message per problem (empty: all
    true). ``history`` is the part of the history the prompt shows; subjects must play their role
    (a transition goes from a history item to a candidate, etc.)."""
    problems = []
    for claim in claims:
        try:
            problem = _check(claim, facts, list(map(int, history)), list(map(int, candidates)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            problem = f"malformed ({type(exc).__name__}: {exc})"
        if problem:
            problems.append(f"{claim.kind} {claim.subjects} = {claim.value!r}: {problem}")
    return problems


def _check(claim: Claim, facts: Facts, history: list[int], candidates: list[int]) -> str | None:
    ids = [facts.sid_index[s] for s in claim.subjects]
    hist, cands = set(history), set(candidates)
    kind, v = claim.kind, claim.value

    def role(group: set[int], *idx: int) -> str | None:
        bad = [claim.subjects[i] for i in idx if ids[i] not in group]
        return f"{bad} not in the {'history' if group is hist else 'candidates'}" if bad else None

    def all_under(prefix: tuple[str, ...]) -> str | None:
        bad = [s for s, i in zip(claim.subjects, ids) if not facts.under(i, prefix)]
        return f"{bad} not under {prefix}" if bad else None

    if kind == "history_category":
        prefix, count, n = tuple(v[0]), int(v[1]), int(v[2])
        actual = sum(facts.under(i, prefix) for i in history)
        return (role(hist, *range(len(ids))) or all_under(prefix)
                or (f"data say {actual} of {len(history)}" if (count, n) != (actual, len(history)) else None))
    if kind == "latest_category":
        if not history or ids != [history[-1]]:
            return "subject is not the latest history item"
        return all_under(tuple(v))
    if kind == "next_category":
        prefix, count, total = tuple(v[0]), int(v[1]), int(v[2])
        nxt = facts.follows.get(ids[0], Counter())
        actual = sum(c for b, c in nxt.items() if facts.under(b, prefix))
        return role(hist, 0) or (f"data say {actual} of {nxt.total()}"
                                 if (count, total) != (actual, nxt.total()) or count == 0 else None)
    if kind == "no_followups":
        busy = [s for s, i in zip(claim.subjects, ids) if facts.follows.get(i)]
        return role(hist, *range(len(ids))) or (f"{busy} have follow-ups" if busy else None)
    if kind == "candidates_in_category":
        prefix, count = tuple(v[0]), int(v[1])
        actual = sum(facts.under(i, prefix) for i in candidates)
        return (role(cands, *range(len(ids))) or all_under(prefix)
                or (f"data say {actual}" if count != actual else None))
    if kind == "transition":
        actual = facts.follows.get(ids[0], Counter())[ids[1]]
        return role(hist, 0) or role(cands, 1) or (f"data say {actual}" if int(v) != actual else None)
    if kind == "shared_category":
        actual = _lcp(facts.paths[ids[0]], facts.paths[ids[1]])
        return role(cands, 0) or role(hist, 1) or (
            f"data say {actual}" if tuple(v) != actual or not actual else None)
    if kind == "title_similarity":
        cos, words = float(v[0]), tuple(v[1])
        actual = facts.cosine(ids[0], ids[1])
        shared = set(title_words(facts.titles[ids[0]])) & set(title_words(facts.titles[ids[1]]))
        return role(cands, 0) or role(hist, 1) or (
            f"data say cosine {actual:.4f}" if abs(actual - cos) > 0.005 + 1e-9 else None) or (
            f"{sorted(set(words) - shared)} not in both titles" if not set(words) <= shared else None)
    if kind == "popularity":
        actual = facts.occurrences[ids[0]]
        return role(cands, 0) or (f"data say {actual}" if int(v) != actual else None)
    return "unknown claim kind"


# --------------------------------------------------------------------------- honest inputs
def evidence_sequences(split: Split, lists: Literal["train", "val", "test"]) -> list[list[int]]:
    """The sequences whose statistics a list of split ``lists`` may use: ``s[:-3]`` for training
    lists (target ``s[-3]``; what the honest training pre-ranker was fitted on), ``Split.train``
    (``s[:-2]``) for validation and test lists (what the eval stage's LambdaMART uses)."""
    if lists == "train":
        return [s[:-3] for s in split.sequences]
    if lists in ("val", "test"):
        return split.train
    raise ValueError(f"lists must be 'train', 'val' or 'test', got {lists!r}")


def newest_position_lists(lists: pd.DataFrame, split: Split) -> pd.DataFrame:
    """The training lists an evidence teacher may answer: those whose target is the user's last
    training item. :func:`evidence_sequences` gives it ``s[:-3]`` of every user, which holds the
    target of every earlier position (``candidates.train_positions_per_user`` > 1), so a list at an
    earlier position would be ranked with its own answer in the statistics. Lists without a
    ``position`` column are all kept (one list per user)."""
    if "position" not in lists:
        return lists
    # the last training position: len(split.train[u]) - 1, without building every training sequence
    newest = np.array([max(len(split.sequences[u]) - 2, 0) - 1 for u in lists["user_id"]], dtype=np.int64)
    return lists[lists["position"].to_numpy() == newest].reset_index(drop=True)
