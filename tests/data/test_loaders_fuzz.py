"""Property test: whatever a user's interactions file holds, :func:`load_generic` returns data or
stops with a :class:`DataFormatError` naming the file — never another exception."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gr2.data.loaders import DataFormatError, load_generic

ITEMS = "item_id,title,categories\ni1,Face cream,Beauty > Skin\ni2,Shampoo,Beauty > Hair\ni3,Gel,\n"
CELLS = st.one_of(
    st.sampled_from(["u1", "u2", "i1", "i2", "i3", "i9", "", " ", "nan", "NaN", "inf", "-inf", "1e400", "1.5", "-3",
                     "0", "1400000000", "2024-01-05T10:00:00", "2024-13-45", "yesterday", "None", "null"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
COLUMNS = st.lists(st.sampled_from(["user_id", "item_id", "timestamp", "position", "rating", "User Id", "x"]),
                   min_size=1, max_size=5, unique=True)


@settings(max_examples=300, deadline=None)
@given(columns=COLUMNS, rows=st.lists(st.lists(CELLS, min_size=5, max_size=5), max_size=8),
       raw_tail=st.binary(max_size=4))
def test_any_interactions_file_loads_or_is_a_data_format_error(columns, rows, raw_tail):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(row[:len(columns)])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.csv").write_text(ITEMS, encoding="utf-8")
        (folder / "interactions.csv").write_bytes(out.getvalue().encode("utf-8", "surrogatepass") + raw_tail)
        try:
            raw = load_generic(folder)
        except DataFormatError as exc:
            assert "interactions.csv" in str(exc) or "items.csv" in str(exc)
        else:
            inter = raw.interactions
            assert inter["raw_item_id"].isin(["i1", "i2", "i3"]).all()
            assert (inter["raw_user_id"].str.strip() != "").all()
            assert inter.groupby("raw_user_id")["position"].apply(lambda p: sorted(p) == list(range(len(p)))).all()
