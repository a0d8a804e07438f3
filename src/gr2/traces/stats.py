"""Statistics of a sampling run, from store records alone (pure; no teacher, no prompts needed).

:func:`trace_stats` reports what docs/method.md §5 asks to log: the acceptance rate overall and per try
(also cumulative), the statistics of *all* answers, rejected ones included (validity, parser error
kinds, identity copying, lengths), and the teacher's own ranking quality on first tries next to the
pre-rank order's on the same lists — the gate "does the shuffled teacher's top-1 beat the
pre-ranker?" (docs/method.md §5, consequence 2). In targeted mode the target was shown to the teacher,
so its R@1 there measures compliance, not skill (``modes`` says which mode the records come from).

Rates with nothing to count are ``None`` (JSON ``null``), never NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gr2.metrics.ranking import evaluate_rankings
from gr2.prompts.parse import STATUSES

__all__ = ["trace_stats", "length_summary", "record_labels"]


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def length_summary(values: Sequence[float]) -> dict[str, float | None]:
    """``mean``, ``p50``, ``p90`` (numpy's linear interpolation) and ``max`` of ``values``."""
    if not values:
        return {"mean": None, "p50": None, "p90": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "max": float(arr.max())}


def _lengths(texts: list[str]) -> dict[str, Any]:
    return {"n": len(texts), "chars": length_summary([len(t) for t in texts]),
            "words": length_summary([len(t.split()) for t in texts])}


def _acceptance(records: list[dict[str, Any]]) -> dict[str, Any]:
    examples = {r["example_id"] for r in records}
    first_ok: dict[str, int] = {}
    for r in records:
        if r["accepted"]:
            a = int(r["attempt"])
            first_ok[r["example_id"]] = min(a, first_ok.get(r["example_id"], a))
    tried = Counter(int(r["attempt"]) for r in records)
    by_attempt = []
    for a in sorted(tried):
        acc = sum(1 for v in first_ok.values() if v == a)
        cum = sum(1 for v in first_ok.values() if v <= a)
        by_attempt.append({"attempt": a, "tried": tried[a], "accepted": acc,
                           "rate": _rate(acc, tried[a]), "cumulative": _rate(cum, len(examples))})
    return {"examples": len(examples), "accepted": len(first_ok),
            "rate": _rate(len(first_ok), len(examples)), "by_attempt": by_attempt}


def record_labels(record: dict[str, Any]) -> list[int]:
    """A record's graded labels per pre-rank index (one-hot on the target in records without them)."""
    if record.get("labels"):
        return [int(g) for g in record["labels"]]
    lab = [0] * len(record["repaired"])
    lab[int(record["target_index"])] = 1
    return lab


def _teacher_quality(first: list[dict[str, Any]]) -> dict[str, Any]:
    """R@1 and N@5 of the teacher's repaired first-try rankings, and the pre-rank order's on the same lists."""
    if not first:
        return {"n": 0, "R@1": None, "N@5": None, "prerank_R@1": None, "prerank_N@5": None}
    labels = [record_labels(r) for r in first]
    teacher = evaluate_rankings([r["repaired"] for r in first], labels, recall_ks=(1,), ndcg_ks=(5,))
    prerank = evaluate_rankings([list(range(len(lab))) for lab in labels], labels, recall_ks=(1,), ndcg_ks=(5,))
    return {"n": len(first), "R@1": teacher["R@1"], "N@5": teacher["N@5"],
            "prerank_R@1": prerank["R@1"], "prerank_N@5": prerank["N@5"]}


def trace_stats(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Acceptance, validity, error kinds, identity copying, lengths and first-try teacher quality.

    * ``acceptance.by_attempt[i]``: ``tried`` = examples asked at that try, ``accepted`` = accepted
      at it, ``rate`` = accepted / tried, ``cumulative`` = share of all examples accepted by then.
    * ``valid_rate``: share of answers that were a valid permutation (parser status ``ok``);
      ``errors``: answers per parser status (``gr2.prompts.parse.STATUSES``, zeros included).
    * ``identity_copy``: among ``ok`` answers, the share equal to the order the candidates were
      shown in (``presented``: position copying) and to the pre-rank order (``prerank``).
    * ``length``: raw answer length in characters and whitespace-separated words, of all answers
      and of accepted ones.
    * ``teacher``: on first tries, R@1 and N@5 of the repaired ranking vs the pre-rank order's.
    """
    recs = list(records)
    ok = [r for r in recs if r["status"] == "ok"]
    status = Counter(r["status"] for r in recs)
    return {
        "modes": sorted({r["mode"] for r in recs}),
        "calls": len(recs),
        "acceptance": _acceptance(recs),
        "valid_rate": _rate(len(ok), len(recs)),
        "errors": {s: int(status.get(s, 0)) for s in STATUSES},
        "identity_copy": {
            "n_ok": len(ok),
            "presented": _rate(sum(r["order"] == r["presented"] for r in ok), len(ok)),
            "prerank": _rate(sum(r["order"] == list(range(len(r["order"]))) for r in ok), len(ok)),
        },
        "forced": sum(bool(r.get("forced")) for r in recs),
        "length": {"all": _lengths([r["text"] for r in recs]),
                   "accepted": _lengths([r["text"] for r in recs if r["accepted"]])},
        "teacher": _teacher_quality([r for r in recs if int(r["attempt"]) == 1]),
    }
