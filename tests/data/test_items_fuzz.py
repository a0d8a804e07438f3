"""Property tests: whatever a user's items file holds (CSV or Parquet), :func:`read_items_file` and
:func:`load_generic` return the items as written or stop with a :class:`DataFormatError` naming the
file — never another exception, never a silently shifted or half-read table."""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from gr2.data.config import DataConfig
from gr2.data.loaders import DataFormatError, load_generic, read_items_file
from gr2.data.prepare import prepare

INTERACTIONS = "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\nu2,i2,3\n"
HEADER_NAMES = ["item_id", "title", "categories", "description", "Item ID", " item_id", "title ", "x"]
CELLS = st.one_of(
    st.sampled_from(["i1", "i2", "i3", "i4", "", " ", "nan", "NaN", "None", "null", "inf", "-inf", "1e400", "0",
                     "Beauty > Skin", "Beauty>Skin", " > ", ">>", "A > > B", '["a", "b"]', "a|b;c", "x\ty", "café",
                     "a\nb", "\x00", "\x1b[31mred", "\r", '"', "'", ",", "\ufeff"]),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


def _one_line(exc: DataFormatError, name: str) -> None:
    text = str(exc).strip()
    assert name in text and "\n" not in text, text


def _check_items(items: pd.DataFrame) -> None:
    ids = items["raw_id"]
    assert all(isinstance(i, str) and i.strip() for i in ids)
    assert ids.is_unique
    assert all(isinstance(t, str) for t in items["title"])
    assert all(isinstance(d, str) for d in items["description"])
    assert all(isinstance(c, list) and all(isinstance(x, str) and x and x == x.strip() for x in c)
               for c in items["categories"])


# -- CSV: anything -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(columns=st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=5, unique=True),
       rows=st.lists(st.lists(CELLS, max_size=7), max_size=6),
       delimiter=st.sampled_from([",", ",", ",", ";", "\t", "|"]),
       bom=st.sampled_from([b"", b"", b"\xef\xbb\xbf"]), raw_tail=st.binary(max_size=4))
def test_any_items_csv_loads_or_is_a_data_format_error(columns, rows, delimiter, bom, raw_tail):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(columns)
    writer.writerows(rows)  # ragged on purpose: rows shorter and longer than the header
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "interactions.csv").write_text(INTERACTIONS, encoding="utf-8")
        (folder / "items.csv").write_bytes(bom + out.getvalue().encode("utf-8", "surrogatepass") + raw_tail)
        try:
            raw = load_generic(folder)
        except DataFormatError as exc:
            _one_line(exc, "items.csv" if "interactions.csv" not in str(exc) else "interactions.csv")
        else:
            _check_items(raw.items)
            assert raw.interactions["raw_item_id"].isin(set(raw.items["raw_id"])).all()


# -- CSV: exactly what was written -----------------------------------------------------------------
SAFE = st.text(alphabet="ab12 >.-", max_size=5)


@settings(max_examples=200, deadline=None)
@given(columns=st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=5, unique=True),
       rows=st.lists(st.lists(st.one_of(st.sampled_from(["i1", "i2", "i3"]), SAFE), min_size=1, max_size=6),
                     min_size=1, max_size=6))
def test_items_csv_is_read_as_written_or_refused(columns, rows):
    """A reference reading of the same cells: the loader agrees with it, or refuses exactly when
    the file breaks the format (a required column missing or twice, a row longer than the header, a
    blank or repeated item_id)."""
    out = io.StringIO()
    csv.writer(out).writerow(columns)
    csv.writer(out).writerows(rows)
    names = [c.strip() for c in columns]
    width = len(names)
    padded = [row + [""] * (width - len(row)) for row in rows]
    table = [dict(zip(names, row)) for row in padded]
    ids = [r.get("item_id", "") for r in table]
    broken = (not {"item_id", "title"} <= set(names) or len(set(names)) < width
              or any(len(row) > width for row in rows)
              or any(not i.strip() for i in ids) or len(set(ids)) < len(ids))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        path.write_text(out.getvalue(), encoding="utf-8")
        try:
            items = read_items_file(path)
        except DataFormatError as exc:
            _one_line(exc, "items.csv")
            assert broken, f"refused a well-formed file: {exc}"
        else:
            assert not broken
            assert items["raw_id"].tolist() == ids
            assert items["title"].tolist() == [r["title"] for r in table]
            assert items["categories"].tolist() == [
                [p.strip() for p in r.get("categories", "").split(">") if p.strip()] for r in table]
            if "description" in names:
                assert items["description"].tolist() == [r["description"] for r in table]


# -- Parquet: typed columns ------------------------------------------------------------------------
ID_VALUES = {
    "str": st.one_of(st.sampled_from(["i1", "i2", "i3", "", " ", "None"]), st.none()),
    "int": st.integers(-5, 5),
    "float": st.one_of(st.sampled_from([1.0, 2.5, math.nan, math.inf, -math.inf, 1e300]), st.integers(0, 3)),
    "list": st.lists(st.sampled_from(["i1", "i2"]), max_size=2),
    "dict": st.fixed_dictionaries({"a": st.sampled_from(["i1", "x"])}),
}
TEXT_VALUES = {
    "str": st.one_of(st.text(max_size=8), st.none()),
    "float": st.sampled_from([1.0, math.nan, math.inf, -0.0, 1e300]),
    "list": st.lists(st.text(max_size=3), max_size=2),
}
CATEGORY_VALUES = {
    "str": st.one_of(st.sampled_from(["A > B", " > ", "", "A>B>C"]), st.text(max_size=6), st.none()),
    "list": st.one_of(st.lists(st.one_of(st.sampled_from(["A", " B ", "", " "]), st.none()), max_size=4),
                      st.none()),
    "nested": st.lists(st.lists(st.sampled_from(["A", "B"]), min_size=1, max_size=2), min_size=1, max_size=2),
    "dict": st.fixed_dictionaries({"path": st.sampled_from(["A", "B"])}),
}


@st.composite
def parquet_items(draw):
    n = draw(st.integers(1, 5))
    columns, kinds = {}, {}
    for name, values in (("item_id", ID_VALUES), ("title", TEXT_VALUES), ("categories", CATEGORY_VALUES),
                         ("description", TEXT_VALUES)):
        if name in ("categories", "description") and draw(st.booleans()):
            continue
        kind = draw(st.sampled_from(sorted(values)))
        kinds[name] = kind
        columns[name] = draw(st.lists(values[kind], min_size=n, max_size=n))
    if draw(st.booleans()):
        gone = draw(st.sampled_from(sorted(columns)))
        del columns[gone], kinds[gone]
    return pd.DataFrame(columns), kinds


@settings(max_examples=150, deadline=None)
@given(parquet_items())
def test_any_items_parquet_loads_or_is_a_data_format_error(frame_kinds):
    frame, kinds = frame_kinds
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.parquet"
        frame.to_parquet(path, index=False)
        try:
            items = read_items_file(path)
        except DataFormatError as exc:
            _one_line(exc, "items.parquet")
        else:
            _check_items(items)
            assert kinds.get("item_id") in ("str", "int", "float")
            if kinds["item_id"] in ("str", "int"):
                assert items["raw_id"].tolist() == [str(v) for v in frame["item_id"]]
            assert kinds.get("title") not in (None, "list") and kinds.get("description") != "list"
            assert kinds.get("categories") not in ("nested", "dict")
            if kinds.get("categories") == "list":
                assert items["categories"].tolist() == [
                    [c.strip() for c in (v or []) if c is not None and c.strip()] for v in frame["categories"]]


# -- interactions against the items file -----------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(item_ids=st.lists(st.sampled_from([f"i{n}" for n in range(6)]), min_size=1, max_size=6, unique=True),
       used=st.lists(st.lists(st.sampled_from([f"i{n}" for n in range(8)]), min_size=3, max_size=3, unique=True),
                     min_size=1, max_size=3))
def test_unknown_items_are_refused_and_unused_items_counted(item_ids, used):
    inter = "user_id,item_id,timestamp\n" + "".join(
        f"u{u},{i},{t}\n" for u, seq in enumerate(used) for t, i in enumerate(seq))
    items = "item_id,title\n" + "".join(f"{i},Item {i}\n" for i in item_ids)
    unknown = [i for seq in used for i in seq if i not in item_ids]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "interactions.csv").write_text(inter, encoding="utf-8")
        (folder / "items.csv").write_text(items, encoding="utf-8")
        try:
            raw = load_generic(folder)
        except DataFormatError as exc:
            assert unknown and f"item_id {unknown[0]!r} is not in" in str(exc) and "interactions.csv" in str(exc)
        else:
            assert not unknown
            assert raw.items["raw_id"].tolist() == item_ids  # items nobody interacted with are kept here...
            stats = prepare(raw, DataConfig(k_core=0)).stats
            never = len(set(item_ids) - {i for seq in used for i in seq})
            assert stats["filtering"]["removed_items_without_interactions"] == never  # ...and counted there
            assert stats["items"] == len(item_ids) - never
