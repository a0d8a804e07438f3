"""Property tests: whatever a slates file holds (JSONL, CSV or Parquet), :func:`load_slates` returns
slates that keep the documented contract (docs/slates.md) or stops with a one-line
:class:`SlateFormatError` naming the file — never another exception, never a silently wrong slate."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import event, given, settings
from hypothesis import strategies as st
from slate_files import N_ITEMS, slate_rows

from gr2.slates.config import SlatesConfig
from gr2.slates.format import (
    DROP_REASONS,
    GRADES,
    SPLITS,
    SlateFormatError,
    load_slates,
)
from gr2.slates.stage import assign_splits

ITEMS = pd.DataFrame({"raw_id": [f"i{i}" for i in range(N_ITEMS)]})
KNOWN = set(ITEMS["raw_id"])
BASE = slate_rows(n_users=6)  # k = 5, history of 6, one or two positives, scores and times
DELETE = object()

IDS = st.one_of(st.sampled_from(["i0", "i1", "i7", "i8", "i29", "i30", "nope", "", " ", "None"]),
                st.integers(0, 40), st.text(max_size=4))
ID_LISTS = st.one_of(st.lists(IDS, max_size=7), st.sampled_from(["i1 i2", "", "[]", '["i1", "i1"]', "[i1"]),
                     st.none(), st.integers(), st.fixed_dictionaries({"a": IDS}))
NUMBERS = st.one_of(st.sampled_from([0, 1, 2, 3, -1, 0.5, 1.0, 2.0, "1", "x", "", None, True, 10**400, math.nan,
                                     math.inf, -math.inf, [1]]),
                    st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3))
NUMBER_LISTS = st.one_of(st.lists(NUMBERS, max_size=7), st.sampled_from(["0 1 2", "[0, 1]", "", "1 x"]),
                         st.none(), NUMBERS)
FIELDS = {
    "user_id": st.one_of(IDS, st.none(), st.floats(allow_nan=True), st.lists(IDS, max_size=1)),
    "history": ID_LISTS,
    "candidates": ID_LISTS,
    "labels": NUMBER_LISTS,
    "scores": NUMBER_LISTS,
    "history_timestamps": st.one_of(NUMBER_LISTS, st.lists(st.sampled_from([0.0, 999.0, 1003.5, 1e12, math.nan]),
                                                            min_size=6, max_size=6)),
    "timestamp": st.one_of(NUMBERS, st.sampled_from([0, 1000.0, 5009.0, 1e12, "2024-01-01"])),
    "request_id": st.one_of(st.sampled_from(["r0-0", "r1-0", "0", "1", "", None]), st.lists(IDS, max_size=1),
                            st.floats(allow_nan=True)),
    "split": st.one_of(st.sampled_from(["train", "val", "test", " test ", "", "holdout", "Train"]), st.none(),
                       st.integers()),
    "extra": IDS,
}
KNOWN_IDS = st.sampled_from(sorted(KNOWN))
BENIGN = {  # values that keep the contract (or make a row a documented drop): the loaded side gets explored too
    "user_id": st.sampled_from(["u1", "x", 7, 7.5, " u9 "]),
    "history": st.lists(KNOWN_IDS, min_size=6, max_size=6),
    "candidates": st.lists(KNOWN_IDS, min_size=5, max_size=5, unique=True),
    "labels": st.one_of(st.lists(st.sampled_from([0, 1, 2, 1.0, "2"]), min_size=5, max_size=5),
                        st.sampled_from(["0 0 1 0 2", "[2, 0, 0, 0, 0]"])),
    "scores": st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=5, max_size=5), st.none()),
    "history_timestamps": st.sampled_from([None, "", [math.nan] * 6, [0.0, 0.0, 1.0, 1.0, 2.0, 3.0]]),
    "timestamp": st.sampled_from([None, "", math.nan, 1e12, "1e12"]),
    "request_id": st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    "split": st.sampled_from([None, ""]),
    "extra": st.integers(),
}
CHANGES = st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.sampled_from(sorted(FIELDS)), st.data()),
                   max_size=4)


def _mutated(changes) -> list[dict]:
    rows = copy.deepcopy(BASE)
    for row, field, data in changes:
        how = data.draw(st.integers(0, 9))
        if how == 0:
            rows[row].pop(field, None)
        else:
            rows[row][field] = data.draw(BENIGN[field] if how < 5 else FIELDS[field])
    return rows


def _load_or_refuse(path: Path):
    """``load_slates`` and the data stage's split check, or ``None`` after a one-line error."""
    try:
        slates, counts = load_slates(path, ITEMS, "items.csv")
        split = assign_splits(slates, SlatesConfig(), str(path))  # a split given for some rows only: refused
        given = slates["split"].notna()
        assert (split[given] == slates["split"][given]).all() and set(split) == set(SPLITS)
        event("loaded")
        return slates, counts
    except SlateFormatError as exc:
        text = str(exc).strip()
        assert str(path) in text and "\n" not in text, text
        field = re.search(r"(?:line|row) \d+: ([a-z_]+)", text)
        event(f"refused: {field.group(1) if field else ' '.join(re.findall('[a-z]+', text[len(str(path)):])[:3])}")
        return None


def _check_contract(slates: pd.DataFrame, counts: dict) -> None:
    """What every later stage relies on (docs/slates.md)."""
    assert counts["kept"] == len(slates) > 0
    assert counts["rows"] == counts["kept"] + sum(counts[r] for r in DROP_REASONS)
    k = counts["k"]
    assert slates["request_id"].is_unique
    for s in slates.to_dict("records"):
        cands, labels, hist, times = s["candidates"], s["labels"], s["history"], s["history_timestamps"]
        assert isinstance(s["user_id"], str) and s["user_id"].strip()
        assert len(cands) == k and len(set(cands)) == k and set(cands) <= KNOWN
        assert hist and set(hist) <= KNOWN
        assert len(labels) == k and all(type(g) is int and g in GRADES for g in labels)
        positives = {c for c, g in zip(cands, labels) if g > 0}
        assert positives and len(positives) < k and not positives & set(hist)
        assert len(s["scores"]) == k and all(isinstance(x, float) for x in s["scores"])
        assert len(times) == len(hist) and all(isinstance(t, float) and not math.isinf(t) for t in times)
        known_times = [t for t in times if not math.isnan(t)]
        assert known_times == sorted(known_times)
        assert isinstance(s["timestamp"], float) and not math.isinf(s["timestamp"])
        if not math.isnan(s["timestamp"]):
            assert all(t <= s["timestamp"] for t in known_times)
        assert pd.isna(s["split"]) or s["split"] in SPLITS


@settings(max_examples=300, deadline=None)
@given(changes=CHANGES, raw=st.one_of(st.none(), st.none(), st.none(),
                                     st.tuples(st.integers(0, 2000), st.binary(min_size=1, max_size=3))))
def test_any_jsonl_slates_load_or_are_a_slate_format_error(changes, raw):
    rows = _mutated(changes)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass")
    if raw is not None:  # a few raw bytes anywhere: broken UTF-8, broken JSON, a split line
        at, junk = raw
        data = data[:at] + junk + data[at:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slates.jsonl"
        path.write_bytes(data)
        got = _load_or_refuse(path)
    if got is None:
        return
    slates, counts = got
    _check_contract(slates, counts)
    if raw is None:  # each kept slate is its own line, read as written
        assert counts["rows"] == len(rows)
        for s in slates.to_dict("records"):
            row = rows[int(s["where"].rsplit("line ", 1)[1]) - 1]
            if isinstance(row["candidates"], list):
                assert s["candidates"] == [str(c) for c in row["candidates"]]
            if isinstance(row["labels"], list):
                assert s["labels"] == [int(float(g)) for g in row["labels"]]
            assert s["user_id"] == str(row["user_id"])


def _cell(value) -> str:
    if isinstance(value, list):
        return json.dumps(value) if any(not isinstance(v, str) or not v.strip() for v in value) else " ".join(value)
    return "" if value is None else str(value)


@settings(max_examples=150, deadline=None)
@given(changes=CHANGES, extra_cells=st.one_of(st.just([]), st.just([]), st.just([]), st.lists(
           st.tuples(st.integers(0, len(BASE) - 1), st.text(max_size=3)), min_size=1, max_size=2)),
       delimiter=st.sampled_from([","] * 6 + [";", "\t"]), raw_tail=st.one_of(st.just(b""), st.binary(max_size=3)))
def test_any_csv_slates_load_or_are_a_slate_format_error(changes, extra_cells, delimiter, raw_tail):
    rows = _mutated(changes)
    columns = sorted({c for r in rows for c in r})
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(columns)
    lines = [[_cell(r.get(c)) for c in columns] for r in rows]
    for row, text in extra_cells:  # a row longer than the header
        lines[row].append(text)
    writer.writerows(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slates.csv"
        path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass") + raw_tail)
        got = _load_or_refuse(path)
    if got is not None:
        _check_contract(*got)
        if not extra_cells and delimiter == "," and not raw_tail:
            for s in got[0].to_dict("records"):  # the CSV line of each kept slate holds its ids
                row = rows[int(s["where"].rsplit("line ", 1)[1]) - 2]
                assert s["user_id"] == _cell(row["user_id"]).strip() or s["user_id"] == _cell(row["user_id"])


PARQUET_FIELDS = {  # one Parquet type per column, bad values of that type
    "user_id": st.one_of(st.sampled_from(["u1", "", " "]), st.none()),
    "history": st.one_of(st.lists(st.one_of(st.sampled_from(["i1", "i7", "i8", "i30", ""]), st.none()), max_size=7),
                         st.none()),
    "candidates": st.one_of(st.lists(st.one_of(st.sampled_from(["i1", "i2", "i7", "i8", "i30", ""]), st.none()),
                                     max_size=7), st.none()),
    "labels": st.one_of(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, math.nan, 1e300]),
                                           st.none()), max_size=7), st.none()),
    "scores": st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6), st.none()),
    "history_timestamps": st.one_of(st.lists(st.sampled_from([0.0, 999.0, 1e12, math.nan, math.inf]), max_size=7),
                                    st.none()),
    "timestamp": st.sampled_from([0.0, 1e12, math.nan, math.inf, -math.inf, 1003.0]),
    "request_id": st.one_of(st.sampled_from(["r0-0", "r1-0", ""]), st.none()),
    "split": st.one_of(st.sampled_from(["train", "test", "", "holdout"]), st.none()),
}


@settings(max_examples=100, deadline=None)
@given(changes=st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.sampled_from(sorted(PARQUET_FIELDS)),
                                  st.data()), max_size=4))
def test_any_parquet_slates_load_or_are_a_slate_format_error(changes):
    rows = copy.deepcopy(BASE)
    for r in rows:
        r["labels"] = [float(g) for g in r["labels"]]
    for row, field, data in changes:
        rows[row][field] = data.draw(PARQUET_FIELDS[field])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slates.parquet"
        pd.DataFrame(rows).to_parquet(path)
        got = _load_or_refuse(path)
    if got is not None:
        _check_contract(*got)
