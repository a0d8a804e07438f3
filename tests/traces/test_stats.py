from __future__ import annotations

import math

import pytest

from gr2.traces.stats import length_summary, trace_stats


def rec(eid, attempt, status, presented, order, repaired, target, accepted, text, mode="rejection", forced=False):
    return dict(example_id=eid, attempt=attempt, status=status, presented=presented, order=order,
                repaired=repaired, target_index=target, accepted=accepted, text=text, mode=mode, forced=forced)


RECORDS = [
    # a: try 1 copies the presented order (target at rank 2), try 2 is the pre-rank order and accepted
    rec("a", 1, "ok", [2, 0, 1], [2, 0, 1], [2, 0, 1], 0, False, "aa bb"),
    rec("a", 2, "ok", [1, 2, 0], [0, 1, 2], [0, 1, 2], 0, True, "x"),
    # b: unreadable; its repaired order puts the target second
    rec("b", 1, "wrong_format", [0, 1, 2], None, [0, 1, 2], 1, False, ""),
    # c: a duplicate, repaired with the target first, accepted
    rec("c", 1, "duplicate", [0, 1, 2], None, [2, 1, 0], 2, True, "one two three"),
]


def test_trace_stats_by_hand():
    s = trace_stats(RECORDS)
    assert s["modes"] == ["rejection"] and s["calls"] == 4 and s["forced"] == 0
    assert s["acceptance"] == {
        "examples": 3, "accepted": 2, "rate": pytest.approx(2 / 3),
        "by_attempt": [
            {"attempt": 1, "tried": 3, "accepted": 1, "rate": pytest.approx(1 / 3), "cumulative": pytest.approx(1 / 3)},
            {"attempt": 2, "tried": 1, "accepted": 1, "rate": 1.0, "cumulative": pytest.approx(2 / 3)},
        ],
    }
    assert s["valid_rate"] == 0.5
    assert s["errors"] == {"ok": 2, "wrong_format": 1, "foreign": 0, "duplicate": 1, "missing": 0}
    assert s["identity_copy"] == {"n_ok": 2, "presented": 0.5, "prerank": 0.5}
    # chars 5, 1, 0, 13 and words 2, 1, 0, 3; p90 interpolates between the 3rd and 4th values
    assert s["length"]["all"] == {
        "n": 4,
        "chars": {"mean": 4.75, "p50": 3.0, "p90": pytest.approx(10.6), "max": 13.0},
        "words": {"mean": 1.5, "p50": 1.5, "p90": pytest.approx(2.7), "max": 3.0},
    }
    assert s["length"]["accepted"] == {
        "n": 2,
        "chars": {"mean": 7.0, "p50": 7.0, "p90": pytest.approx(11.8), "max": 13.0},
        "words": {"mean": 2.0, "p50": 2.0, "p90": pytest.approx(2.8), "max": 3.0},
    }
    # first tries a, b, c: teacher ranks the target 2, 2, 1; the pre-rank order ranks it 1, 2, 3
    n2, n3 = 1 / math.log2(3), 1 / math.log2(4)
    assert s["teacher"] == {
        "n": 3, "R@1": pytest.approx(1 / 3), "N@5": pytest.approx((2 * n2 + 1) / 3),
        "prerank_R@1": pytest.approx(1 / 3), "prerank_N@5": pytest.approx((1 + n2 + n3) / 3),
    }


def test_trace_stats_empty_has_no_nan():
    s = trace_stats([])
    assert s["calls"] == 0 and s["valid_rate"] is None
    assert s["acceptance"] == {"examples": 0, "accepted": 0, "rate": None, "by_attempt": []}
    assert s["identity_copy"] == {"n_ok": 0, "presented": None, "prerank": None}
    assert s["length"]["all"]["chars"] == {"mean": None, "p50": None, "p90": None, "max": None}
    assert s["teacher"]["R@1"] is None and s["errors"]["ok"] == 0


def test_forced_and_modes():
    recs = [rec("a", 1, "ok", [0, 1], [0, 1], [0, 1], 1, True, "t", mode="targeted", forced=True),
            rec("b", 1, "ok", [0, 1], [1, 0], [1, 0], 1, True, "t", mode="targeted")]
    s = trace_stats(recs)
    assert s["modes"] == ["targeted"] and s["forced"] == 1 and s["teacher"]["R@1"] == 0.5


def test_length_summary():
    assert length_summary([4]) == {"mean": 4.0, "p50": 4.0, "p90": 4.0, "max": 4.0}
