"""An evidence-grounded offline teacher (method.md §5, consequence (4)).

Sub-1B instruct models are not usable zero-shot teachers (method.md §5, "measured here"), and a large
teacher is not always at hand. This teacher needs neither:

1. it **ranks** the candidates with the strongest non-LLM model we have, the LambdaMART re-ranker of
   :mod:`gr2.rerank` (fitted on the validation lists, as the eval stage does);
2. it **explains** that ranking in the three steps of method.md §5 (history patterns → next categories
   → match and rank) from facts that anyone can re-check against the data: category paths shared with
   specific history items, item→item transition counts, title (TF-IDF) similarity to a specific
   history item, and popularity. Every fact is a :class:`Claim` that cites items by the SID strings
   the prompt shows; :func:`verify_claims` re-checks each one against the data with code that does
   not share the teacher's lookups (plain ``Counter`` recounts instead of the feature tables).

Honesty. On a training list (target ``s[-3]``) the teacher must not see the target. Every statistic
it uses (model features *and* stated facts) comes from a :class:`~gr2.rerank.FeatureBuilder` fitted
on :func:`evidence_sequences` — ``s[:-3]`` per user for training lists, the same sequences the honest
training pre-ranker saw (``gr2.prerank.stage``), and ``Split.train`` for validation/test lists. Only
the LambdaMART *weights* are learned on the validation lists (features from ``Split.train``); they are
then applied with the training-list feature builder.

The prose is deterministic: phrasing variants are picked by a hash of the example id (never the
global RNG) so a student does not learn one fixed sentence.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gr2.data.splits import Split
from gr2.rerank import FeatureBuilder, LambdaMARTConfig, LambdaMARTReranker
from gr2.runs import RunDir

__all__ = [
    "TEACHER_NAME",
    "Claim",
    "EvidenceTrace",
    "Facts",
    "EvidenceTeacher",
    "build_teacher",
    "evidence_sequences",
    "render",
    "title_words",
    "verify_claims",
]

TEACHER_NAME = "evidence (LambdaMART + data facts)"

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


@dataclass
class EvidenceTrace:
    """A teacher answer: ``order`` (pre-rank indices, best first), the prose, and the claims it says."""

    order: list[int]
    explanation: str
    claims: list[Claim]


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
    newest = np.array([len(split.train[u]) - 1 for u in lists["user_id"]], dtype=np.int64)
    return lists[lists["position"].to_numpy() == newest].reset_index(drop=True)


def _with_features(ranker: LambdaMARTReranker, features: FeatureBuilder) -> LambdaMARTReranker:
    """The fitted model, computing its features with another (fitted) builder."""
    out = LambdaMARTReranker(features, ranker.config)
    out.booster, out.n_trees = ranker.booster, ranker.n_trees
    out.cv_curve, out.fit_info = ranker.cv_curve, ranker.fit_info
    return out


def build_teacher(items: pd.DataFrame, sids: Sequence[str], sequences: Sequence[Sequence[int]],
                  val_lists: pd.DataFrame, val_sequences: Sequence[Sequence[int]],
                  config: LambdaMARTConfig | None = None, max_history: int | None = 50) -> EvidenceTeacher:
    """The teacher without a run directory.

    Args:
        items: ``item_id``, ``title``, ``categories`` (as ``data/items.parquet``).
        sids: ``sids[item_id]``, exactly as the prompt shows them.
        sequences: the evidence sequences of the lists to explain (:func:`evidence_sequences`).
        val_lists: validation lists with ``labels`` (LambdaMART's training data).
        val_sequences: the sequences the validation lists' features come from (``Split.train``).
        config: LambdaMART hyper-parameters.
        max_history: most recent history items the prompt shows; claims cite no older one.
    """
    model_features = FeatureBuilder().fit(items, val_sequences)
    ranker = LambdaMARTReranker(model_features, config).fit(val_lists)
    features = FeatureBuilder().fit(items, sequences)
    facts = Facts.from_frames(items, sids, sequences, features)
    return EvidenceTeacher(_with_features(ranker, features), facts, max_history)


# --------------------------------------------------------------------------- the teacher
class EvidenceTeacher:
    """LambdaMART ranks; the data explain. See the module docstring for the honesty rules.

    Args:
        ranker: a fitted LambdaMART model whose feature builder was fitted on ``facts.sequences``.
        facts: the data the claims cite.
        max_history: the most recent history items the prompt shows (``None``: all).
        n_explained: how many top-ranked candidates step 3 explains.
        min_title_cosine: weakest title similarity worth stating.
        max_words: an explanation this long is redone briefly (top candidate's evidence capped at 2
            facts like the others', the last candidate left out).
    """

    name = TEACHER_NAME
    deterministic = True
    """The same list always gets the same answer: the sampler asks once per list."""

    def __init__(self, ranker: LambdaMARTReranker, facts: Facts, max_history: int | None = 50,
                 n_explained: int = 3, min_title_cosine: float = 0.3, max_words: int = 150) -> None:
        fb = ranker.features
        counts = np.bincount(np.fromiter((i for s in facts.sequences for i in s), dtype=np.int64),
                             minlength=fb.n_items)
        if not np.array_equal(fb.pop, counts):  # e.g. Split.train statistics for training lists
            raise ValueError("the ranker's feature builder was not fitted on facts.sequences")
        self.ranker, self.facts, self.features = ranker, facts, fb
        self.max_history = max_history
        self.n_explained = n_explained
        self.min_title_cosine = min_title_cosine
        self.max_words = max_words
        self.topic_depth = facts.root_depth + 2

    @classmethod
    def from_run(cls, run: RunDir, split: Literal["train", "val", "test"] = "train",
                 config: LambdaMARTConfig | None = None, max_history: int | None = 50,
                 sid_wrap: bool = False) -> EvidenceTeacher:
        """Build from ``data/``, ``sid/sids.parquet`` and ``candidates/val.parquet`` of ``run`` for
        explaining lists of ``split``; ``sid_wrap`` as in :class:`~gr2.prompts.render.PromptConfig`."""
        from gr2.data.stage import load_items, load_split
        from gr2.sid.render import render_sid

        data = load_split(run)
        table = pd.read_parquet(run.file("sid", "sids.parquet")).sort_values("item_id", kind="stable")
        sids = [render_sid([int(c) for c in codes], wrap=sid_wrap) for codes in table["codes"]]
        val_lists = pd.read_parquet(run.file("candidates", "val.parquet"))
        return build_teacher(load_items(run), sids, evidence_sequences(data, split), val_lists,
                             data.train, config, max_history)

    # -------------------------------------------------------------------- API
    def answer_examples(self, examples: Sequence[Any], prompts: Sequence[Any]) -> list[str]:
        """The teacher's answer to each rendered prompt (``gr2.traces.sampling`` calls this instead
        of ``complete`` for teachers that read the lists, not the text): the JSON the prompt asks
        for, with the LambdaMART ranking and the evidence explanation."""
        from gr2.prompts.render import assistant_text

        out = []
        for example, prompt in zip(examples, prompts):
            trace = self.explain([h.item_id for h in example.history], [c.item_id for c in example.candidates],
                                 example.example_id)
            ranked = [prompt.candidate_sids[i] for i in trace.order]
            out.append(assistant_text(trace.explanation, ranked, reasoning=prompt.reasoning))
        return out

    def explain(self, history: Sequence[int], candidates: Sequence[int], example_id: str,
                scores: Sequence[float] | None = None) -> EvidenceTrace:
        """One list. ``scores`` are the pre-ranker's; without them the model's score features are
        missing (NaN, which LightGBM handles) and it leans on position and the data features."""
        k = len(candidates)
        frame = pd.DataFrame({"example_id": [example_id], "history": [list(history)],
                              "candidates": [list(candidates)],
                              "scores": [list(scores) if scores is not None else [np.nan] * k]})
        with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # all-NaN score stats
            return self.explain_lists(frame)[0]

    def explain_lists(self, lists: pd.DataFrame) -> list[EvidenceTrace]:
        """Every list of a ``candidates/*.parquet`` frame (``example_id`` names the phrasing)."""
        orders = self.ranker.rerank(lists)
        has_ids = "example_id" in lists.columns
        ids = lists["example_id"].astype(str).tolist() if has_ids else list(map(str, lists.index))
        out = []
        for h, c, o, eid in zip(lists["history"], lists["candidates"], orders, ids):
            history = self.shown(h)
            ranked = [int(c[i]) for i in o]
            ranked_sids = [self.facts.sids[i] for i in ranked]
            for brief in (False, True):  # the brief version only when the full one is too long
                claims = self.claims(history, ranked, brief)
                text = render(claims, ranked_sids, len(history), self.facts.root_depth, eid)
                if len(text.split()) < self.max_words:
                    break
            out.append(EvidenceTrace(order=[int(i) for i in o], explanation=text, claims=claims))
        return out

    def shown(self, history: Sequence[int]) -> list[int]:
        """The history items the prompt shows (the most recent ``max_history``)."""
        h = [int(i) for i in history]
        if self.max_history is None:
            return h
        return h[-self.max_history:] if self.max_history > 0 else []

    # ----------------------------------------------------------------- claims
    def claims(self, history: list[int], ranked: list[int], brief: bool = False) -> list[Claim]:
        """All claims for a list: steps 1, 2 and 3 in that order (``ranked``: candidate ids, best first;
        ``brief``: fewer step-3 facts, see ``max_words``)."""
        step1, focus = self._history_claims(history)
        step2, focus = self._next_claims(history, ranked, focus)
        return step1 + step2 + self._ranking_claims(history, ranked, focus, brief)

    def _topic(self, item: int) -> tuple[str, ...]:
        return self.facts.paths[item][: self.topic_depth]

    def _history_claims(self, history: list[int]) -> tuple[list[Claim], tuple[str, ...]]:
        """Step 1: the history's dominant category (if two items share it) and the latest item's."""
        sid, facts = self.facts.sids, self.facts
        topics = {self._topic(i): pos for pos, i in enumerate(history) if facts.paths[i]}
        best, count = (), 0
        for topic in sorted(topics, key=topics.__getitem__, reverse=True):  # most recent first
            n = sum(facts.under(i, topic) for i in history)
            if n > count:
                best, count = topic, n
        out = []
        if count >= 2:
            recent = list(dict.fromkeys(sid[i] for i in reversed(history) if facts.under(i, best)))[:2]
            out.append(Claim("history_category", tuple(recent), (best, count, len(history))))
        if history and facts.paths[history[-1]] and not (count >= 2 and facts.under(history[-1], best)):
            out.append(Claim("latest_category", (sid[history[-1]],), self._topic(history[-1])))
        return out, best if count >= 2 else ()

    def _next_claims(self, history: list[int], ranked: list[int],
                     focus: tuple[str, ...]) -> tuple[list[Claim], tuple[str, ...]]:
        """Step 2: where training users went after the most recent item that has follow-ups, and which
        candidates lie there (falls back to the history's dominant category)."""
        out: list[Claim] = []
        recent = list(dict.fromkeys(reversed(history)))[:3]
        for a in recent:
            nxt, cnt = self._successors(a)
            if cnt.sum() == 0:
                continue
            by_topic: Counter[tuple[str, ...]] = Counter()
            for topic in {self._topic(int(b)) for b in nxt if self.facts.paths[b]}:
                by_topic[topic] = int(sum(c for b, c in zip(nxt, cnt) if self.facts.under(int(b), topic)))
            if by_topic:
                topic, n = min(by_topic.items(), key=lambda t: (-t[1], t[0]))
                out.append(Claim("next_category", (self.facts.sids[a],), (topic, n, int(cnt.sum()))))
                focus = topic
            break
        else:
            if recent:
                out.append(Claim("no_followups", tuple(self.facts.sids[a] for a in recent), 0))
        if focus:
            inside = [i for i in ranked if self.facts.under(i, focus)]
            out.append(Claim("candidates_in_category", tuple(self.facts.sids[i] for i in inside[:3]),
                             (focus, len(inside))))
        return out, focus

    def _ranking_claims(self, history: list[int], ranked: list[int], focus: tuple[str, ...],
                        brief: bool) -> list[Claim]:
        """Step 3: evidence for the top candidates, and for the last one when nothing links it to the
        latest purchase. ``focus``: the category step 2 named (a shared category no deeper is not news)."""
        out: list[Claim] = []
        for rank, c in enumerate(ranked[: self.n_explained]):
            out += self._candidate_evidence(c, history, 3 if rank == 0 and not brief else 2, focus)
        last = ranked[-1]
        unlinked = bool(history) and self._pair(history[-1], last) == 0
        if not brief and unlinked and len(ranked) > self.n_explained + 1:
            sid = self.facts.sids
            out += [Claim("transition", (sid[history[-1]], sid[last]), 0),
                    Claim("popularity", (sid[last],), int(self.features.pop[last]))]
        return out

    def _candidate_evidence(self, c: int, history: list[int], cap: int,
                            focus: tuple[str, ...]) -> list[Claim]:
        """The strongest facts linking candidate ``c`` to the history (popularity when none)."""
        sid, facts = self.facts.sids, self.facts
        out = []
        recent = list(dict.fromkeys(reversed(history)))
        trans = [(self._pair(h, c), -pos, h) for pos, h in enumerate(recent[:3])]
        n, _, h = max(trans, default=(0, 0, -1))
        if n > 0:
            out.append(Claim("transition", (sid[h], sid[c]), int(n)))
        shared = [(len(_lcp(facts.paths[c], facts.paths[h])), -pos, h) for pos, h in enumerate(recent)]
        depth, _, h = max(shared, default=(0, 0, -1))
        if depth > max(facts.root_depth, len(focus) if facts.under(c, focus) else 0):
            out.append(Claim("shared_category", (sid[c], sid[h]), _lcp(facts.paths[c], facts.paths[h])))
        if recent:
            sims = np.asarray((facts.tfidf[recent] @ facts.tfidf[c].T).todense()).ravel()
            pos = int(np.argmax(sims))  # first maximum = most recent
            if sims[pos] >= self.min_title_cosine:
                h = recent[pos]
                words = facts.shared_words(c, h)
                out.append(Claim("title_similarity", (sid[c], sid[h]), (round(float(sims[pos]), 2), words)))
        if not out:
            out.append(Claim("popularity", (sid[c],), int(self.features.pop[c])))
        return out[:cap]

    # ------------------------------------------------------ transition lookups
    def _successors(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Items bought right after ``a`` in the evidence sequences, with counts (feature tables)."""
        fb = self.features
        lo, hi = np.searchsorted(fb.trans_keys, [a * fb.n_items, (a + 1) * fb.n_items])
        return fb.trans_keys[lo:hi] - a * fb.n_items, fb.trans_counts[lo:hi]

    def _pair(self, a: int, b: int) -> int:
        nxt, cnt = self._successors(a)
        hit = np.flatnonzero(nxt == b)
        return int(cnt[hit[0]]) if hit.size else 0


# --------------------------------------------------------------------------- prose
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
           example_id: str) -> str:
    """The three-step explanation of ``claims`` (as :meth:`EvidenceTeacher.claims` orders them);
    ``ranked_sids``: the candidates best first; ``n_history``: history items shown; ``root_depth``:
    leading category levels not worth printing."""

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

    return " ".join(f"{label} {_cap(' '.join(parts))}" for label, parts in zip(labels, (step1, step2, step3)))


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
