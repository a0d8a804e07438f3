"""Traces on graded slates: any candidate with the slate's highest label is a right top-1; a lower
positive first is not. The gate and the trace statistics score records with their graded labels."""

from __future__ import annotations

import pytest

from gr2.prompts.parse import ParseResult
from gr2.prompts.render import ItemText
from gr2.traces.config import TracesConfig
from gr2.traces.gate import gate_verdict
from gr2.traces.sampling import TraceExample, judge
from gr2.traces.stats import trace_stats

LABELS = (0, 1, 2, 0, 2)  # best: indices 2 and 4; the target is the first of them


def _example(labels=LABELS) -> TraceExample:
    items = tuple(ItemText(i, f"<s_{i}>") for i in range(len(labels)))
    return TraceExample("ex", items[:1], items, labels.index(max(labels)), labels)


def _parsed(order: list[int]) -> ParseResult:
    return ParseResult("ok", "why", [], order, order)


def test_best_and_grades():
    ex = _example()
    assert ex.best == (2, 4) and ex.target_index == 2 and ex.grades == list(LABELS)
    single = TraceExample("s", ex.history, ex.candidates, 3)
    assert single.best == (3,) and single.grades == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="positive highest label at target_index"):
        TraceExample("bad", ex.history, ex.candidates, 1, LABELS)


@pytest.mark.parametrize("order, accepted", [
    ([2, 0, 1, 3, 4], True),   # the target first
    ([4, 2, 1, 0, 3], True),   # the other top-graded item first: as right
    ([1, 2, 4, 0, 3], False),  # a click first while conversions exist
    ([0, 1, 2, 3, 4], False),
])
def test_rejection_accepts_any_top_graded_first(order, accepted):
    ex = _example()
    got = judge(_parsed(order), ex.target_index, TracesConfig(mode="rejection"), ex.best)
    assert (got == order) if accepted else got is None


def test_targeted_moves_the_target_only_when_no_top_graded_item_leads():
    ex, cfg = _example(), TracesConfig(mode="targeted")
    assert judge(_parsed([4, 2, 1, 0, 3]), ex.target_index, cfg, ex.best) == [4, 2, 1, 0, 3]
    assert judge(_parsed([1, 4, 0, 2, 3]), ex.target_index, cfg, ex.best) == [2, 1, 4, 0, 3]


def test_gate_and_stats_score_with_graded_labels():
    # the teacher always puts index 4 (grade 2, not the target) first; the pre-rank order has grade 0 first
    records = [{"repaired": [4, 2, 1, 0, 3], "target_index": 2, "labels": list(LABELS), "status": "ok",
                "attempt": 1, "mode": "rejection", "example_id": f"e{i}", "accepted": True, "presented": [0, 1, 2, 3, 4],
                "order": [4, 2, 1, 0, 3], "text": "x", "ranking": [4, 2, 1, 0, 3]} for i in range(30)]
    v = gate_verdict(records, n_boot=50)
    assert v["teacher"]["top1"] == 1.0 and v["prerank"]["top1"] == 0.0 and v["passed"]
    assert v["teacher"]["N@5"] == pytest.approx(1.0)
    assert trace_stats(records)["teacher"]["R@1"] == pytest.approx(1 / 3)  # one of three positives at 1
