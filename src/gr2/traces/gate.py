"""The teacher gate (docs/method.md §5, "consequences"): rejection sampling only distils reasoning if the
teacher ranks better than the list it re-ranks. Before sampling traces, the teacher answers a sample
of lists **shown shuffled** (so copying the shown order scores like a random order, not like the
pre-ranker) and its top-1 hit rate is compared with the pre-rank order's R@1 on the same lists by a
paired bootstrap. The gate passes when the 95% interval of the difference lies above zero.

The gate's calls go to their own append-only store (``traces/gate.jsonl``), so an interrupted gate
resumes and a finished one is not asked again; the verdict is ``traces/teacher_gate.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from gr2.metrics.bootstrap import paired_bootstrap
from gr2.metrics.ranking import evaluate_rankings
from gr2.traces.config import TracesConfig
from gr2.traces.sampling import TraceExample, sample_traces
from gr2.traces.stats import record_labels
from gr2.traces.store import TraceStore
from gr2.traces.teachers import Teacher

__all__ = ["gate_verdict", "run_gate"]


def gate_verdict(records: Sequence[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The gate from first-try records (``repaired`` order in pre-rank indices, ``target_index``,
    ``status``, graded ``labels`` when present): the teacher's top-1 (share of lists whose first item
    has the list's highest label) / R@5 / N@5 / valid rate, the pre-rank order's on the same lists,
    the paired bootstrap of top-1 (teacher − pre-rank) and ``passed`` (interval above 0)."""
    first = [r for r in records if int(r["attempt"]) == 1]
    if not first:
        raise ValueError("the gate has no answers to judge")
    labels = [record_labels(r) for r in first]
    ks = dict(recall_ks=(1, 5), ndcg_ks=(5,))
    teacher = evaluate_rankings([r["repaired"] for r in first], labels, **ks)
    prerank = evaluate_rankings([list(range(len(lab))) for lab in labels], labels, **ks)
    # top-1 = a candidate with the list's highest label (the target; any of them on a graded slate)
    top1_teacher = [float(lab[r["repaired"][0]] == max(lab)) for r, lab in zip(first, labels)]
    top1_prerank = [float(lab[0] == max(lab)) for lab in labels]
    test = paired_bootstrap(top1_prerank, top1_teacher, n_boot=n_boot, seed=seed)
    return {
        "lists": len(first),
        "teacher": {"top1": sum(top1_teacher) / len(first), "R@5": teacher["R@5"], "N@5": teacher["N@5"],
                    "valid_rate": sum(r["status"] == "ok" for r in first) / len(first)},
        "prerank": {"top1": sum(top1_prerank) / len(first), "R@5": prerank["R@5"], "N@5": prerank["N@5"]},
        "top1_diff": test["diff"], "top1_diff_ci": [test["diff_lo"], test["diff_hi"]], "p_value": test["p_value"],
        "n_boot": n_boot, "passed": bool(test["diff_lo"] > 0),
    }


def run_gate(teacher: Teacher, examples: Sequence[TraceExample], cfg: TracesConfig, store: TraceStore,
             progress: bool = False) -> dict[str, Any]:
    """Ask ``teacher`` once per example with the candidates shuffled (whatever ``cfg.prompt.order``
    says) and judge it with :func:`gate_verdict`."""
    shuffled = dataclasses.replace(cfg.prompt, order="shuffled")
    gate_cfg = dataclasses.replace(cfg, mode="rejection", attempts=1, prompt=shuffled)
    records = sample_traces(teacher, examples, gate_cfg, store, progress=progress)
    verdict = gate_verdict(records, seed=cfg.seed)
    verdict["teacher_name"] = teacher.name
    return verdict
