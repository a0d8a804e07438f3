from __future__ import annotations

import json
import logging

import pytest

from gr2.traces.store import TraceStore


def rec(eid: str, attempt: int, **extra) -> dict:
    return {"example_id": eid, "attempt": attempt, "text": f"answer ñ {eid}/{attempt}\nline 2", **extra}


def test_round_trip(tmp_path):
    path = tmp_path / "t" / "samples.jsonl"
    store = TraceStore(path)
    assert len(store) == 0 and store.done == set() and not path.exists()
    store.append([rec("a", 1), rec("b", 1)])
    store.append([rec("a", 2, accepted=True)])
    store.append([])
    again = TraceStore(path)
    assert again.records == store.records == [rec("a", 1), rec("b", 1), rec("a", 2, accepted=True)]
    assert again.done == {("a", 1), ("b", 1), ("a", 2)}
    assert [r["attempt"] for r in again.by_example()["a"]] == [1, 2]
    assert path.read_text(encoding="utf-8").count("\n") == 3  # one line per record


def test_refuses_repeated_keys(tmp_path):
    store = TraceStore(tmp_path / "s.jsonl")
    store.append([rec("a", 1)])
    with pytest.raises(ValueError, match="already stored"):
        store.append([rec("b", 1), rec("a", 1)])
    with pytest.raises(ValueError, match="repeated"):
        store.append([rec("c", 1), rec("c", 1)])
    assert TraceStore(tmp_path / "s.jsonl").done == {("a", 1)}  # nothing of the refused batches written


def test_truncated_last_line_is_dropped_and_cut(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    TraceStore(path).append([rec("a", 1), rec("b", 1)])
    good = path.read_bytes()
    partial = json.dumps(rec("c", 1)).encode()[:25]
    path.write_bytes(good + partial)  # a crash in the middle of the third line
    with caplog.at_level(logging.WARNING, logger="gr2.traces.store"):
        store = TraceStore(path)
    assert "truncated" in caplog.text
    assert store.done == {("a", 1), ("b", 1)}
    assert path.read_bytes() == good  # the partial bytes are gone, so the next line starts cleanly
    store.append([rec("c", 1)])
    assert TraceStore(path).done == {("a", 1), ("b", 1), ("c", 1)}


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec("a", 1)) + "\n" + json.dumps(rec("b", 1)), encoding="utf-8")
    store = TraceStore(path)
    assert store.done == {("a", 1), ("b", 1)}
    store.append([rec("c", 1)])
    assert TraceStore(path).done == {("a", 1), ("b", 1), ("c", 1)}


def test_corrupt_middle_line_raises(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec("a", 1)) + "\n{not json\n" + json.dumps(rec("b", 1)) + "\n")
    with pytest.raises(ValueError, match="line 2 is corrupt"):
        TraceStore(path)


def test_duplicate_line_on_disk_keeps_first(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [rec("a", 1, v=1), rec("a", 1, v=2)]))
    with caplog.at_level(logging.WARNING, logger="gr2.traces.store"):
        store = TraceStore(path)
    assert [r["v"] for r in store] == [1] and "repeats" in caplog.text
