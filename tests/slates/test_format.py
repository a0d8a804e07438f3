"""The slates file: every documented bad input is a clear error (file, row, field) or a counted drop."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from slate_files import slate_rows, write_jsonl

from gr2.data.loaders import DataFormatError, read_items_file
from gr2.slates.format import SlateFormatError, load_slates


def _load(tmp_path: Path, items_csv: Path, rows: list[dict]):
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    return load_slates(path, read_items_file(items_csv), items_csv)


def _broken(change) -> list[dict]:
    rows = slate_rows(n_users=4)
    change(rows[2])  # the third row: line 3 of the file
    return rows


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("labels"), r"line 3: labels: missing; expected 5 labels"),
    (lambda r: r.update(labels=None), r"line 3: labels: missing; expected 5 labels"),
    (lambda r: r.update(labels=[1, 0]), r"line 3: labels: 2 labels for 5 candidates"),
    (lambda r: r.update(labels=[3, 0, 0, 0, 0]), r"line 3: labels: 3 is not a grade"),
    (lambda r: r.update(labels=["x", 0, 0, 0, 0]), r"line 3: labels: 'x' is not a number"),
    (lambda r: r["candidates"].__setitem__(1, "nope"), r"line 3: candidates: item 'nope' is not in the items file"),
    (lambda r: r["history"].__setitem__(0, "nope"), r"line 3: history: item 'nope' is not in the items file"),
    (lambda r: r["candidates"].__setitem__(1, r["candidates"][0]), r"line 3: candidates: item 'i\d+' appears 2 times"),
    (lambda r: r.update(scores=[1.0]), r"line 3: scores: 1 scores for 5 candidates"),
    (lambda r: r.update(history_timestamps=[1.0]), r"line 3: history_timestamps: 1 times for 6 history items"),
    (lambda r: r.update(candidates="i1 i2"), r"line 3: labels: 5 labels for 2 candidates"),
    (lambda r: r.update(candidates=7), r"line 3: candidates: expected a list"),
    (lambda r: r.update(split="holdout"), r"line 3: split: 'holdout'; expected one of"),
    (lambda r: r.update(request_id="r0-0"), r"line 3: request_id 'r0-0' already used at .*line 1"),
    (lambda r: r.pop("user_id"), r"line 3: user_id: missing"),
    # were tracebacks (OverflowError) or silently accepted:
    (lambda r: r["labels"].__setitem__(0, 10**400),
     r"line 3: labels: 10000000000000000000\.\.\. \(401 digits\) is too large a number"),
    (lambda r: r.update(timestamp=10**400), r"line 3: timestamp: .* is too large a number"),
    (lambda r: r.update(timestamp=float("inf")), r"line 3: timestamp: inf is not a finite time"),
    (lambda r: r["history_timestamps"].reverse(),
     r"line 3: history_timestamps: history item 2 \('i3'\) at 2004 is older than item 1 \(2005\); expected the hist"),
    (lambda r: r.update(timestamp=2003.5),
     r"line 3: history_timestamps: history item 5 \('i6'\) at 2004 is after the request's timestamp 2003.5"),
    (lambda r: r.update(user_id=["u2"]), r"line 3: user_id: expected a string or number, got \['u2'\]"),
    (lambda r: r.update(request_id={"id": 2}), r"line 3: request_id: expected a string or number"),
])
def test_bad_rows_are_errors_naming_file_row_and_field(tmp_path, items_csv, change, message):
    with pytest.raises(SlateFormatError, match=message) as err:
        _load(tmp_path, items_csv, _broken(change))
    assert str(tmp_path / "s.jsonl") in str(err.value)
    assert isinstance(err.value, DataFormatError)  # the CLI reports it as a data error, no traceback


@pytest.mark.parametrize("line, message", [
    (b'{"user_id": "u\xe9"}', r"s.jsonl: not UTF-8 text \(byte \d+, line 2: 0xe9\)"),  # was UnicodeDecodeError
    (b'{"user_id": ' + b"1" * 5000 + b"}", r"s.jsonl: line 2: not valid JSON \(a number too long"),  # was ValueError
    (b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"s.jsonl: line 2: not valid JSON"),  # RecursionError
])
def test_unreadable_jsonl_lines_are_errors(tmp_path, items_csv, line, message):
    path = write_jsonl(tmp_path / "s.jsonl", slate_rows(n_users=3))
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([lines[0], line, *lines[1:]]) + b"\n")
    with pytest.raises(SlateFormatError, match=message):
        load_slates(path, read_items_file(items_csv))


def test_a_byte_order_mark_is_read_like_csv(tmp_path, items_csv):
    path = write_jsonl(tmp_path / "s.jsonl", slate_rows(n_users=4))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # was: line 1: not valid JSON (Unexpected UTF-8 BOM)
    assert load_slates(path, read_items_file(items_csv))[1]["kept"] == 4


def test_a_csv_row_longer_than_the_header_is_an_error(tmp_path, items_csv):
    path = tmp_path / "s.csv"  # pandas read 'u1' as the index and shifted every value one column left
    path.write_text("user_id,history,candidates,labels\nu1,i1 i2,i3 i4,1 0,oops\n", encoding="utf-8")
    # read by the data loader (gr2.data.loaders.read_table), which names a CSV row "row N (line)"
    with pytest.raises(SlateFormatError, match=r"s.csv: row 2 \(line\): 5 fields but the header has 4 column\(s\)"):
        load_slates(path, read_items_file(items_csv))


def test_missing_column_names_what_is_expected(tmp_path, items_csv):
    rows = [{k: v for k, v in r.items() if k != "candidates"} for r in slate_rows(n_users=3)]
    with pytest.raises(SlateFormatError, match=r"missing column\(s\) \['candidates'\]"):
        _load(tmp_path, items_csv, rows)


def test_unusable_slates_are_dropped_and_counted(tmp_path, items_csv):
    rows = slate_rows(n_users=10)
    rows[0]["labels"] = [0] * 5                      # no positive
    rows[1]["labels"] = [1] * 5                      # no negative
    rows[2]["history"] = rows[2]["history"] + [rows[2]["candidates"][rows[2]["labels"].index(2)]]
    rows[2]["history_timestamps"] = None             # the leak: a positive already in the history
    rows[3]["history"], rows[3]["history_timestamps"] = [], []
    rows[4]["candidates"].append("i0" if "i0" not in rows[4]["candidates"] else "i29")
    rows[4]["labels"].append(0)
    rows[4]["scores"] = None                          # a 6-candidate slate among 5-candidate ones
    slates, counts = _load(tmp_path, items_csv, rows)
    assert counts == {"rows": 10, "empty_history": 1, "history_has_positive": 1, "no_positive": 1,
                      "no_negative": 1, "other_length": 1, "kept": 5, "k": 5}
    assert list(slates["request_id"]) == [f"r{u}-0" for u in range(5, 10)]


def test_nothing_usable_is_an_error(tmp_path, items_csv):
    rows = slate_rows(n_users=2)
    for r in rows:
        r["labels"] = [0] * 5
    with pytest.raises(SlateFormatError, match=r"no usable slate among 2 rows .*no_positive"):
        _load(tmp_path, items_csv, rows)


def test_parquet_and_csv_read_like_jsonl(tmp_path, items_csv):
    rows = slate_rows(n_users=4)
    want, _ = _load(tmp_path, items_csv, copy.deepcopy(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "s.parquet")
    csv_rows = [{**r, "history": " ".join(r["history"]), "candidates": str(r["candidates"]).replace("'", '"'),
                 "labels": " ".join(map(str, r["labels"])), "scores": "", "history_timestamps": ""}
                for r in rows]
    pd.DataFrame(csv_rows).to_csv(tmp_path / "s.csv", index=False)
    items = read_items_file(items_csv)
    for name in ("s.parquet", "s.csv"):
        got, counts = load_slates(tmp_path / name, items)
        assert counts["kept"] == 4
        for col in ("request_id", "user_id", "history", "candidates", "labels"):
            assert got[col].tolist() == want[col].tolist(), (name, col)
    csv_rows[1]["labels"] = "1 0"
    pd.DataFrame(csv_rows).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(SlateFormatError, match=r"s.csv: line 3: labels: 2 labels for 5 candidates"):
        load_slates(tmp_path / "s.csv", items)
