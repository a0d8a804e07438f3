"""The ``traces`` stage (docs/method.md §5): reasoning traces from a teacher for SFT.

Reads ``data/items.parquet``, ``sid/sids.parquet`` and ``candidates/{split}.parquet``; writes under
``traces/``:

* ``samples.jsonl`` — every finished teacher call, accepted or not (append-only; a rerun resumes it,
  see :mod:`gr2.traces.store` and :func:`gr2.traces.sampling.make_record`). A file made under another
  sampling config is moved aside to ``samples.stale-<UTC time>.jsonl`` first, never mixed in;
* ``accepted.jsonl`` — one SFT example per accepted trace (:func:`gr2.traces.sampling.sft_example`);
* ``stats.json`` — :func:`gr2.traces.stats.trace_stats` of the sampled lists, plus the lists used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any

import pandas as pd

from gr2.lists import seeded_sample
from gr2.prompts.items import load_item_texts
from gr2.prompts.render import ItemText
from gr2.runs import RunDir, atomic_write_json, atomic_write_text
from gr2.traces.config import TracesConfig
from gr2.traces.sampling import TraceExample, sample_traces, sampling_key, sft_example
from gr2.traces.stats import trace_stats
from gr2.traces.store import TraceStore
from gr2.traces.teachers import Teacher, make_teacher

log = logging.getLogger(__name__)

__all__ = ["OUTPUTS", "load_examples", "run_traces"]

OUTPUTS = ("traces/samples.jsonl", "traces/accepted.jsonl", "traces/stats.json")
"""``teacher_gate.json`` and ``gate.jsonl`` are written too unless ``gate_lists`` is 0."""


def load_examples(lists: pd.DataFrame, texts: dict[int, ItemText], n: int | None,
                  seed: int) -> tuple[list[TraceExample], dict[str, int]]:
    """The lists whose target is among the candidates, then ``n`` of them (seeded, order kept).
    Lists with several positives (slates) keep their graded labels: any top-labelled candidate is
    then an accepted top-1 (:func:`gr2.traces.sampling.judge`)."""
    keep: list[TraceExample] = []
    for row in lists.itertuples(index=False):
        cands = [int(c) for c in row.candidates]
        target = int(row.target)
        if target not in cands:
            continue
        labels = tuple(int(g) for g in row.labels) if hasattr(row, "labels") else ()
        keep.append(TraceExample(str(row.example_id), tuple(texts[int(h)] for h in row.history),
                                 tuple(texts[c] for c in cands), cands.index(target), labels))
    counts = {"lists": len(lists), "with_target": len(keep)}
    keep = seeded_sample(keep, n, seed)
    counts["sampled"] = len(keep)
    return keep, counts


def _open_store(path, key: str) -> TraceStore:
    """The store at ``path``; one written under another sampling key is moved aside first."""
    store = TraceStore(path)
    if any(r.get("key") != key for r in store):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.stem}.stale-{stamp}.jsonl")
        log.warning("%s was sampled under another config; moved to %s", path, aside.name)
        path.rename(aside)
        store = TraceStore(path)
    return store


def check_gate(teacher: Teacher, examples: list[TraceExample], cfg: TracesConfig, out) -> dict[str, Any]:
    """Run the teacher gate (:mod:`gr2.traces.gate`), write ``teacher_gate.json``; raise unless it
    passed or ``cfg.gate_override``."""
    from dataclasses import replace

    from gr2.traces.gate import run_gate

    gate_key = sampling_key(replace(cfg, prompt=replace(cfg.prompt, order="shuffled")), teacher.name)
    verdict = run_gate(teacher, examples, cfg, _open_store(out / "gate.jsonl", gate_key), progress=True)
    verdict["override"] = cfg.gate_override
    atomic_write_json(out / "teacher_gate.json", verdict)
    t, p = verdict["teacher"], verdict["prerank"]
    lo, hi = verdict["top1_diff_ci"]
    line = (f"teacher gate on {verdict['lists']} shuffled {cfg.split} lists: {teacher.name} top-1 {t['top1']:.3f} "
            f"(valid {t['valid_rate']:.0%}) vs pre-rank R@1 {p['top1']:.3f}; difference 95% CI [{lo:+.3f}, {hi:+.3f}]")
    if verdict["passed"]:
        log.info("%s: passed", line)
    elif cfg.gate_override:
        log.warning("%s: FAILED, continuing because traces.gate_override is set", line)
    else:
        raise RuntimeError(f"{line}: the teacher does not beat the list it re-ranks, so its accepted traces "
                           "would teach copying. Use a stronger teacher (--teacher evidence, a larger model, "
                           "an OpenAI-compatible server) or --set traces.gate_override=true")
    return verdict


def run_traces(run: RunDir, cfg: TracesConfig, teacher: Teacher | None = None) -> dict[str, Any]:
    """Sample traces for ``cfg.split`` lists and write the SFT set and its statistics.

    ``teacher`` overrides the one ``cfg`` describes (tests, or a teacher built by the caller).
    """
    t0 = time.perf_counter()
    texts = load_item_texts(run)
    lists = pd.read_parquet(run.file("candidates", f"{cfg.split}.parquet"))
    if teacher is None and cfg.teacher == "evidence" and cfg.split == "train":
        from gr2.data.stage import load_split
        from gr2.traces.facts import newest_position_lists

        n = len(lists)
        lists = newest_position_lists(lists, load_split(run))
        log.info("traces: the evidence teacher answers the %d of %d training lists at each user's newest "
                 "position (its statistics hold the targets of earlier ones)", len(lists), n)
    examples, counts = load_examples(lists, texts, cfg.n_examples, cfg.seed)
    log.info("traces: %d of %d %s lists (%d contain their target), mode %s",
             counts["sampled"], counts["lists"], cfg.split, counts["with_target"], cfg.mode)
    out = run.stage_dir("traces")
    owned = teacher is None
    if teacher is None and cfg.teacher == "evidence":
        from gr2.traces.evidence import EvidenceTeacher

        teacher = EvidenceTeacher.from_run(run, split=cfg.split, max_history=cfg.prompt.max_history,
                                           sid_wrap=cfg.prompt.sid_wrap)
    teacher = teacher or make_teacher(cfg)
    try:
        gate = check_gate(teacher, examples[:cfg.gate_lists], cfg, out) if cfg.gate_lists else None
        store = _open_store(out / "samples.jsonl", sampling_key(cfg, teacher.name))
        records = sample_traces(teacher, examples, cfg, store, progress=True)
    finally:
        if owned and hasattr(teacher, "close"):
            teacher.close()
    if not (out / "samples.jsonl").exists():  # nothing to ask: still leave the promised file
        (out / "samples.jsonl").touch()

    by_id = {e.example_id: e for e in examples}
    accepted = [sft_example(by_id[r["example_id"]], r, cfg.prompt) for r in records if r["accepted"]]
    atomic_write_text(out / "accepted.jsonl",
                      "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in accepted))
    stats = trace_stats(records)
    atomic_write_json(out / "stats.json", {
        "split": cfg.split, "lists": counts, "config": dataclasses.asdict(cfg), **stats,
        "teacher": {"name": teacher.name, **stats["teacher"]},  # who, and its first-try quality
        "gate": gate,
        "seconds": round(time.perf_counter() - t0, 2),
    })
    summary = {
        "examples": counts["sampled"], "calls": stats["calls"], "accepted": len(accepted),
        "acceptance_rate": stats["acceptance"]["rate"], "valid_rate": stats["valid_rate"],
        "teacher_R@1": stats["teacher"]["R@1"], "prerank_R@1": stats["teacher"]["prerank_R@1"],
    }
    log.info("traces: %s", summary)
    return summary
