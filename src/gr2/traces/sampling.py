"""Rejection and targeted sampling of reasoning traces (docs/method.md §5), resumable through a store.

**Rejection sampling** (ground truth hidden). Every example gets up to ``attempts`` tries; try
``a`` shows the candidates in their own shuffled order (``rng_key=f"{example_id}:{a}"``) and asks
the teacher with its own seed (:func:`request_seed`), so a teacher that copies positions is not
rewarded (docs/method.md §5). A try is accepted when the teacher's top-1, mapped back to pre-rank
order, is the target (see ``TracesConfig.accept``); an accepted example is not tried again. On a
graded slate (docs/slates.md) any candidate with the slate's highest label counts as the target:
those are equally right at the top, and a lower-graded positive first is a worse ranking.

**Targeted sampling** (ground truth revealed; one try). The user message gets one extra paragraph
naming the target (:func:`reveal_text`) and asking for reasoning that shows why it fits best. Any
readable answer is accepted; its SFT ranking is the teacher's order with the target **moved to the
front** when the teacher did not put it there (``forced`` in the record). We force rather than reject
because the mode exists to get one rationale per example in one pass: the explanation is what is
kept, and a ranking that contradicts the revealed label would teach the student a wrong top-1. The
SFT prompt (:func:`sft_example`) never contains the reveal.

Sampling runs attempt-round by attempt-round over all pending examples (so the teacher always gets
full batches) and appends each batch to the :class:`~gr2.traces.store.TraceStore`; a rerun with
the same store skips every ``(example_id, attempt)`` already answered.

Record (one store line) — see :func:`make_record`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gr2.fingerprints import without_neutral
from gr2.llm.generate import GenerationParams
from gr2.prompts.parse import ParseResult
from gr2.prompts.render import (
    ItemText,
    PromptConfig,
    RenderedPrompt,
    assistant_text,
    build_messages,
)
from gr2.traces.config import TracesConfig
from gr2.traces.store import TraceStore
from gr2.traces.teachers import Teacher

log = logging.getLogger(__name__)

__all__ = [
    "TraceExample",
    "request_seed",
    "sampling_key",
    "reveal_text",
    "teacher_prompt",
    "judge",
    "make_record",
    "sample_traces",
    "sft_example",
]


@dataclass(frozen=True)
class TraceExample:
    """One re-ranking list: history (oldest first), candidates (pre-rank order), target position."""

    example_id: str
    history: tuple[ItemText, ...]
    candidates: tuple[ItemText, ...]
    target_index: int
    """Pre-rank index of the item bought next (``0 <= target_index < len(candidates)``); on a graded
    slate the first candidate with the highest label (the one targeted sampling reveals)."""
    labels: tuple[int, ...] = ()
    """Graded label of each candidate (slates); empty: the target alone is positive."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", tuple(self.history))
        object.__setattr__(self, "candidates", tuple(self.candidates))
        object.__setattr__(self, "labels", tuple(int(g) for g in self.labels))
        if not 0 <= self.target_index < len(self.candidates):
            raise ValueError(f"{self.example_id}: target_index {self.target_index} outside "
                             f"0..{len(self.candidates) - 1}")
        if self.labels and (len(self.labels) != len(self.candidates)
                            or self.labels[self.target_index] != max(self.labels) or max(self.labels) <= 0):
            raise ValueError(f"{self.example_id}: labels {self.labels} need one per candidate and a positive "
                             f"highest label at target_index {self.target_index}")

    @property
    def grades(self) -> list[int]:
        """The graded labels (one-hot on the target when none were given)."""
        if self.labels:
            return list(self.labels)
        return [int(i == self.target_index) for i in range(len(self.candidates))]

    @property
    def best(self) -> tuple[int, ...]:
        """Pre-rank indices of every candidate with the highest label: each is a right top-1."""
        grades = self.grades
        return tuple(i for i, g in enumerate(grades) if g == max(grades))


def request_seed(seed: int, example_id: str, attempt: int) -> int:
    """The seed of one request: a hash of ``(seed, example_id, attempt)`` (stable across runs)."""
    digest = hashlib.blake2b(f"{int(seed)}|{example_id}|{int(attempt)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def sampling_key(cfg: TracesConfig, teacher_name: str) -> str:
    """Hash of what decides a sample: records made under another key must not be mixed in.

    ``attempts``, ``n_examples`` and batching are left out, so raising them extends a finished run;
    so are prompt fields added later at their neutral value (:data:`gr2.fingerprints.NEUTRAL_FIELDS`,
    e.g. ``reasoning_format: free``), so stores made before they existed still match.
    """
    prompt = without_neutral(dataclasses.asdict(cfg.prompt))
    payload = {
        "teacher": teacher_name, "mode": cfg.mode, "accept": cfg.accept, "temperature": cfg.temperature,
        "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
        "extra_body": cfg.extra_body, "prompt": prompt,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def reveal_text(rendered: RenderedPrompt, target_index: int, cfg: PromptConfig) -> str:
    """The targeted-sampling paragraph that names the target (appended to the user message)."""
    sid = rendered.candidate_sids[target_index]
    where = ""
    if cfg.number_candidates:
        where = f" (candidate [{rendered.presented.index(target_index) + 1}])"
    ask = ("Write the three-step reasoning an analyst would give without being told this, showing from "
           "the history and the candidates why this item fits best, and rank it first."
           if cfg.reasoning else "Rank it first.")
    return f"For this example the item the user actually bought next is {sid}{where}. {ask}"


def teacher_prompt(example: TraceExample, cfg: PromptConfig, attempt: int, targeted: bool) -> RenderedPrompt:
    """The prompt of one try (presentation keyed by ``f"{example_id}:{attempt}"``; reveal if targeted)."""
    rendered = build_messages(example.history, example.candidates, cfg, rng_key=f"{example.example_id}:{attempt}")
    if targeted:
        user = rendered.messages[-1]
        user["content"] = f"{user['content']}\n\n{reveal_text(rendered, example.target_index, cfg)}"
    return rendered


def judge(parsed: ParseResult, target_index: int, cfg: TracesConfig,
          best: Sequence[int] = ()) -> list[int] | None:
    """The SFT ranking (pre-rank indices, best first) when the answer is accepted, else ``None``.

    Unreadable answers (``wrong_format``) are never accepted, nor, when the prompt asks for the three
    tagged steps (``reasoning_format="think"``), answers whose explanation does not hold them (SFT
    would teach another format); ``accept="top1_valid"`` also rejects repaired ones. Rejection keeps the repaired order and needs the target (or another of ``best``,
    the equally top-labelled candidates of a graded slate) first; targeted moves the target to the
    front unless one of those is there already.
    """
    if parsed.status == "wrong_format" or (cfg.accept == "top1_valid" and parsed.status != "ok"):
        return None
    if parsed.steps_status not in (None, "ok"):
        return None
    ranking = list(parsed.repaired)
    if ranking[0] == target_index or ranking[0] in best:
        return ranking
    if cfg.mode == "rejection":
        return None
    ranking.remove(target_index)
    return [target_index, *ranking]


def make_record(
    example: TraceExample, attempt: int, rendered: RenderedPrompt, text: str, cfg: TracesConfig,
    key: str, teacher: str, params: GenerationParams, batch_seconds: float, batch_size: int,
) -> dict[str, Any]:
    """One store line: the call, the parser's verdict and the acceptance decision.

    Fields: ``example_id``, ``attempt`` (1-based), ``mode``, ``key`` (:func:`sampling_key`),
    ``teacher``, ``params`` (the request's decoding parameters, its own seed included),
    ``presented`` (pre-rank index shown at each position), ``target_index``, ``text`` (raw answer),
    ``status`` (parser status), ``n_duplicates``/``n_missing``/``n_foreign``, ``explanation``,
    ``order`` (pre-rank indices, ``null`` unless ``status == "ok"``), ``repaired`` (always a
    permutation, the parser's repair policy), ``accepted``, ``ranking`` (the SFT ranking, ``null``
    unless accepted), ``forced`` (targeted: the target had to be moved first), ``labels`` (graded
    label per pre-rank index; one-hot on the target for single-positive lists),
    ``batch_seconds``/``batch_size`` (wall time of the teacher call this answer came from and the
    answers it returned), ``time`` (UTC, ISO 8601).
    """
    parsed = rendered.parse(text)
    ranking = judge(parsed, example.target_index, cfg, example.best)
    return {
        "example_id": example.example_id,
        "attempt": attempt,
        "mode": cfg.mode,
        "key": key,
        "teacher": teacher,
        "params": params.to_dict(),
        "presented": list(rendered.presented),
        "target_index": example.target_index,
        "labels": example.grades,
        "text": text,
        "status": parsed.status,
        "n_duplicates": parsed.n_duplicates,
        "n_missing": parsed.n_missing,
        "n_foreign": parsed.n_foreign,
        "explanation": parsed.explanation,
        "order": parsed.order,
        "repaired": list(parsed.repaired),
        "accepted": ranking is not None,
        "ranking": ranking,
        "forced": ranking is not None and ranking != list(parsed.repaired),
        "batch_seconds": round(batch_seconds, 4),
        "batch_size": batch_size,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _check_store(store: TraceStore, ids: set[str], key: str) -> None:
    stale = {r.get("key") for r in store if r["example_id"] in ids and r.get("key") != key}
    if stale:
        raise ValueError(f"{store.path} holds samples of these examples made under another sampling "
                         f"config (keys {sorted(map(str, stale))}, now {key}); use a fresh store")


def sample_traces(
    teacher: Teacher,
    examples: Sequence[TraceExample],
    cfg: TracesConfig,
    store: TraceStore,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Sample traces for ``examples`` into ``store`` (resuming it); their records, by example then attempt."""
    from tqdm.auto import tqdm

    ids = [e.example_id for e in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("example ids must be unique")
    key = sampling_key(cfg, teacher.name)
    _check_store(store, set(ids), key)
    accepted = {r["example_id"] for r in store if r["accepted"]}
    targeted = cfg.mode == "targeted"
    max_attempts = 1 if getattr(teacher, "deterministic", False) else cfg.max_attempts
    for attempt in range(1, max_attempts + 1):
        pending = [e for e in examples
                   if e.example_id not in accepted and (e.example_id, attempt) not in store.done]
        if not pending:
            continue
        batches = [pending[i:i + cfg.batch_size] for i in range(0, len(pending), cfg.batch_size)]
        bar = tqdm(batches, desc=f"traces {cfg.mode} try {attempt}/{max_attempts}", unit="batch",
                   disable=not progress)
        newly = 0
        for batch in bar:
            prompts = [teacher_prompt(e, cfg.prompt, attempt, targeted) for e in batch]
            seeds = [request_seed(cfg.seed, e.example_id, attempt) for e in batch]
            base = GenerationParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                    top_p=cfg.top_p, seed=seeds[0])
            start = time.perf_counter()
            if hasattr(teacher, "answer_examples"):  # reads the lists themselves (the evidence teacher)
                texts = teacher.answer_examples(batch, prompts)
            else:
                texts = teacher.complete([p.messages for p in prompts], base, seeds)
            seconds = time.perf_counter() - start
            if len(texts) != len(batch):
                raise RuntimeError(f"teacher {teacher.name} returned {len(texts)} answers for {len(batch)} prompts")
            records = [make_record(e, attempt, p, t, cfg, key, teacher.name,
                                   dataclasses.replace(base, seed=s), seconds, len(batch))
                       for e, p, t, s in zip(batch, prompts, texts, seeds)]
            store.append(records)
            for r in records:
                if r["accepted"]:
                    accepted.add(r["example_id"])
                    newly += 1
        log.info("traces try %d: %d examples asked, %d accepted (%d accepted in all)",
                 attempt, len(pending), newly, len(accepted & set(ids)))
    grouped = store.by_example()
    return [r for i in ids for r in grouped.get(i, [])]


def sft_example(example: TraceExample, record: dict[str, Any], cfg: PromptConfig) -> dict[str, Any]:
    """The SFT example of an accepted record: the prompt *without* any reveal, shown in the same
    presentation as the accepted try, and the assistant JSON with the record's ranking."""
    if not record["accepted"]:
        raise ValueError(f"{record['example_id']} try {record['attempt']} was not accepted")
    rendered = teacher_prompt(example, cfg, int(record["attempt"]), targeted=False)
    if rendered.presented != record["presented"]:
        raise ValueError(f"{example.example_id}: presentation differs from the stored one "
                         "(prompt config changed since sampling?)")
    ranked = [rendered.candidate_sids[i] for i in record["ranking"]]
    return {
        "example_id": example.example_id,
        "attempt": record["attempt"],
        "mode": record["mode"],
        "target_index": example.target_index,
        "ranking": record["ranking"],
        "forced": record["forced"],
        "teacher": record["teacher"],
        "messages": rendered.messages,
        "completion": assistant_text(record["explanation"], ranked, reasoning=cfg.reasoning, wrap=cfg.sid_wrap),
    }
