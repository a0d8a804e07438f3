"""An evidence-grounded offline teacher (docs/method.md §5, consequence (4)).

Sub-1B instruct models are not usable zero-shot teachers (docs/method.md §5, "measured here"), and a large
teacher is not always at hand. This teacher needs neither:

1. it **ranks** the candidates with the strongest non-LLM model we have, the LambdaMART re-ranker of
   :mod:`gr2.rerank` (fitted on the validation lists, as the eval stage does);
2. it **explains** that ranking in the three steps of docs/method.md §5 (history patterns → next categories
   → match and rank) from facts that anyone can re-check against the data: category paths shared with
   specific history items, item→item transition counts, title (TF-IDF) similarity to a specific
   history item, and popularity. Every fact is a :class:`~gr2.traces.facts.Claim` that cites items by
   the SID strings the prompt shows; :func:`~gr2.traces.facts.verify_claims` re-checks each one against the data with code that does
   not share the teacher's lookups (plain ``Counter`` recounts instead of the feature tables).

Honesty. On a training list (target ``s[-3]``) the teacher must not see the target. Every statistic
it uses (model features *and* stated facts) comes from a :class:`~gr2.rerank.FeatureBuilder` fitted
on :func:`~gr2.traces.facts.evidence_sequences` — ``s[:-3]`` per user for training lists, the same sequences the honest
training pre-ranker saw (``gr2.candidates.stage``), and ``Split.train`` for validation/test lists. Only
the LambdaMART *weights* are learned on the validation lists (features from ``Split.train``); they are
then applied with the training-list feature builder.

The prose (:mod:`gr2.traces.prose`) is deterministic.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from gr2.rerank import FeatureBuilder, LambdaMARTConfig, LambdaMARTReranker
from gr2.runs import RunDir
from gr2.traces.facts import Claim, Facts, _lcp, evidence_sequences
from gr2.traces.prose import render

__all__ = [
    "TEACHER_NAME",
    "EvidenceTeacher",
    "EvidenceTrace",
    "build_teacher",
]

TEACHER_NAME = "evidence (LambdaMART + data facts)"


@dataclass
class EvidenceTrace:
    """A teacher answer: ``order`` (pre-rank indices, best first), the prose, and the claims it says."""

    order: list[int]
    explanation: str
    claims: list[Claim]


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
        sequences: the evidence sequences of the lists to explain
            (:func:`~gr2.traces.facts.evidence_sequences`).
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
        from gr2.prompts.sids import render_sid

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
        for, with the LambdaMART ranking and the evidence explanation (the three tagged steps when the
        prompt asks for them: ``reasoning_format="think"``)."""
        from gr2.prompts.render import assistant_text

        out = []
        for example, prompt in zip(examples, prompts):
            think = getattr(prompt, "reasoning_format", "free") == "think"  # "free" without reasoning
            trace = self.explain([h.item_id for h in example.history], [c.item_id for c in example.candidates],
                                 example.example_id, think=think)
            ranked = [prompt.candidate_sids[i] for i in trace.order]
            out.append(assistant_text(trace.explanation, ranked, reasoning=prompt.reasoning))
        return out

    def explain(self, history: Sequence[int], candidates: Sequence[int], example_id: str,
                scores: Sequence[float] | None = None, think: bool = False) -> EvidenceTrace:
        """One list. ``scores`` are the pre-ranker's; without them the model's score features are
        missing (NaN, which LightGBM handles) and it leans on position and the data features.
        ``think``: the explanation as the three tagged steps (:func:`gr2.traces.prose.render`)."""
        k = len(candidates)
        frame = pd.DataFrame({"example_id": [example_id], "history": [list(history)],
                              "candidates": [list(candidates)],
                              "scores": [list(scores) if scores is not None else [np.nan] * k]})
        with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # all-NaN score stats
            return self.explain_lists(frame, think)[0]

    def explain_lists(self, lists: pd.DataFrame, think: bool = False) -> list[EvidenceTrace]:
        """Every list of a ``candidates/*.parquet`` frame (``example_id`` names the phrasing); ``think``
        as in :meth:`explain`."""
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
                text = render(claims, ranked_sids, len(history), self.facts.root_depth, eid, think)
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
