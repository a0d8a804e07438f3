from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gr2.data.config import DataConfig
from gr2.data.loaders import DataFormatError, load_beauty, load_generic, read_items_file
from gr2.data.prepare import k_core, prepare
from gr2.data.splits import sequences_from_interactions

SHARED_BEAUTY = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon-beauty"


def test_beauty_matches_the_paper_counts():
    prepared = prepare(load_beauty(), DataConfig())
    s = prepared.stats
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    assert s["filtering"]["removed_k_core"] == 0
    assert round(s["avg_history_len"], 2) == 8.88


@pytest.mark.skipif(not SHARED_BEAUTY.exists(), reason="../shared not beside the project")
def test_vendored_beauty_is_the_shared_copy():
    from gr2.data.loaders import beauty_dir

    for name in ("items.jsonl.gz", "sequences.jsonl.gz"):
        assert (beauty_dir() / name).read_bytes() == (SHARED_BEAUTY / name).read_bytes()


def test_generic_roundtrip_and_time_order(generic_dir: Path):
    raw = load_generic(generic_dir)
    prepared = prepare(raw, DataConfig(k_core=0))
    inter = prepared.interactions
    assert prepared.stats["users"] == 40 and prepared.stats["interactions"] == 280
    # shuffle the file: order must come from timestamps, not from the file
    df = pd.read_csv(generic_dir / "interactions.csv").sample(frac=1.0, random_state=0)
    df.to_csv(generic_dir / "interactions.csv", index=False)
    again = prepare(load_generic(generic_dir), DataConfig(k_core=0))
    split_a = sequences_from_interactions(inter)
    split_b = sequences_from_interactions(again.interactions)
    items_a = prepared.items.set_index("item_id")["raw_id"]
    items_b = again.items.set_index("item_id")["raw_id"]
    users_a = dict(zip(inter.user_id, inter.raw_user_id))
    users_b = dict(zip(again.interactions.user_id, again.interactions.raw_user_id))
    as_raw_a = {users_a[u]: [items_a[i] for i in s] for u, s in enumerate(split_a.sequences)}
    as_raw_b = {users_b[u]: [items_b[i] for i in s] for u, s in enumerate(split_b.sequences)}
    assert as_raw_a == as_raw_b
    assert as_raw_a["u3"] == [f"i{3 + t}" for t in range(7)]
    assert prepared.items.loc[0, "categories"] == ["Beauty", "Group 0", "Kind 0"] or len(
        prepared.items.loc[0, "categories"]) == 3


def test_k_core_iterates_to_a_fixed_point():
    # item x has 2 users; removing it drops user b below 2 → a second pass is needed
    pairs = pd.DataFrame(
        {"raw_user_id": list("aaabbc"), "raw_item_id": ["x", "y", "z", "x", "w", "y"]}
    )
    out, passes = k_core(pairs, 2)
    assert passes >= 2
    counts_u = out.raw_user_id.value_counts()
    counts_i = out.raw_item_id.value_counts()
    assert (counts_u >= 2).all() and (counts_i >= 2).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.rename(columns={"user_id": "User Id"}), "missing column"),
        (lambda d: d.drop(columns=["timestamp"]), "timestamp or position"),
        (lambda d: pd.concat([d, d.iloc[[3]]]), "duplicate interaction"),
        (lambda d: d.assign(item_id=d.item_id.where(d.index != 5, "nope")), "'nope' is not in"),
        (lambda d: d.assign(timestamp=d.timestamp.astype(str).where(d.index != 2, "yesterday")), "yesterday"),
        (lambda d: d.assign(timestamp=d.timestamp.astype(str).where(d.index != 2, "1e400")),
         "row 4 (line): timestamp '1e400' is not a finite number"),
        (lambda d: d.assign(user_id=d.user_id.astype(str).where(d.index != 3, "")),
         "row 5 (line): user_id is missing or blank (1 row(s))"),
        (lambda d: d.assign(item_id=d.item_id.astype(str).where(d.index != 3, "  ")),
         "row 5 (line): item_id is missing or blank"),
        (lambda d: d.drop(columns=["timestamp"]).assign(position=[i + 0.5 if i == 6 else i for i in range(len(d))]),
         "row 8 (line): position '6.5' is not a whole number"),
    ],
)
def test_bad_interactions_name_file_and_row(generic_dir: Path, mutate, message):
    path = generic_dir / "interactions.csv"
    mutate(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(DataFormatError) as err:
        load_generic(generic_dir)
    assert message in str(err.value) and "interactions.csv" in str(err.value)


def test_a_null_id_in_parquet_names_its_row(generic_dir: Path):
    df = pd.read_csv(generic_dir / "interactions.csv")
    df["user_id"] = df["user_id"].astype(object).where(df.index != 4, None)
    df.to_parquet(generic_dir / "interactions.parquet", index=False)
    (generic_dir / "interactions.csv").unlink()
    with pytest.raises(DataFormatError, match=r"interactions.parquet: row 4: user_id is missing or blank"):
        load_generic(generic_dir)


def test_both_a_csv_and_a_parquet_file_is_an_error(generic_dir: Path):
    pd.read_csv(generic_dir / "items.csv").to_parquet(generic_dir / "items.parquet", index=False)
    with pytest.raises(DataFormatError, match="both items.parquet and items.csv exist"):
        load_generic(generic_dir)


def test_a_filter_that_leaves_no_user_says_which_one(generic_dir: Path):
    with pytest.raises(DataFormatError, match=r"no user is left after filtering .*by the 50-core.*lower data.k_core"):
        prepare(load_generic(generic_dir), DataConfig(k_core=50))


def test_a_non_utf8_byte_far_into_the_file_is_located_in_the_whole_file(generic_dir: Path):
    rows = "".join(f"i{n},Item number {n}\n" for n in range(20000))
    data = ("item_id,title\n" + rows).encode("utf-8") + b"i-bad,caf\xe9\n"
    (generic_dir / "items.csv").write_bytes(data)
    at = data.index(b"\xe9")
    line = data.count(b"\n", 0, at) + 1
    with pytest.raises(DataFormatError, match=rf"not UTF-8 text \(byte {at}, line {line}: 0xe9\)"):
        load_generic(generic_dir)


def test_a_semicolon_delimited_file_gets_a_hint(generic_dir: Path):
    path = generic_dir / "interactions.csv"
    pd.read_csv(path).to_csv(path, index=False, sep=";")
    with pytest.raises(DataFormatError, match="looks delimited by ';'"):
        load_generic(generic_dir)


def test_bad_row_number_is_the_csv_line(generic_dir: Path):
    path = generic_dir / "interactions.csv"
    df = pd.read_csv(path)
    df.loc[5, "item_id"] = "ghost"
    df.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"row 7 \(line\)"):
        load_generic(generic_dir)


def test_empty_and_non_utf8_files(generic_dir: Path):
    (generic_dir / "items.csv").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty file"):
        load_generic(generic_dir)
    (generic_dir / "items.csv").write_bytes("item_id,title\ni1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="not UTF-8"):
        load_generic(generic_dir)


def test_filters_are_counted(generic_dir: Path):
    prepared = prepare(load_generic(generic_dir), DataConfig(k_core=5, max_users=10, seed=1))
    f = prepared.stats["filtering"]
    assert f["raw_interactions"] == 280
    assert f["removed_user_sample"] == 30 * 7
    assert prepared.stats["users"] == 10
    assert f["removed_items_without_interactions"] == 30 - prepared.stats["items"]


@pytest.mark.parametrize("text, message", [
    # a header cell that is another one with spaces: was a pandas ValueError (traceback)
    ("item_id, item_id,title\ni1,i2,x\n", r"items.csv: column 'item_id' appears twice in the header"),
    # a first row longer than the header: pandas took 'i1,a' as the index and read item 'b' titled 'c'
    ("item_id,title\ni1,a,b,c\ni2,d\n", r"items.csv: row 2 \(line\): 4 fields but the header has 2 column\(s\)"),
    # a blank or missing item id: was an item called ''
    ("item_id,title\ni1,a\n,b\n", r"items.csv: row 3 \(line\): item_id is missing or blank \(1 row\(s\)\); every item"),
    ("title,item_id\na,i1\nb\n", r"items.csv: row 3 \(line\): item_id is missing or blank"),
])
def test_bad_items_csv_names_file_row_and_field(generic_dir: Path, text, message):
    (generic_dir / "items.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=message):
        load_generic(generic_dir)


def test_a_first_interaction_row_longer_than_the_header_is_an_error(generic_dir: Path):
    path = generic_dir / "interactions.csv"
    path.write_text(path.read_text().replace("\n", ",extra\n", 2).replace(",extra", "", 1), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"interactions.csv: row 2 \(line\): 4 fields but the header has 3"):
        load_generic(generic_dir)


@pytest.mark.parametrize("column, values, message", [
    ("item_id", ["i1", None], r"items.parquet: row 1: item_id is missing or blank"),   # was an item called nan
    ("item_id", [["i1"], ["i2"]], r"row 0: item_id \['i1'\] is not an id"),           # was an item "['i1']"
    ("title", [["a"], ["b", "c"]], r"row 0: title \['a'\] is not text"),
    ("categories", [[["Beauty", "Skin"]], []],
     r"row 0: categories \[\['Beauty', 'Skin'\]\] holds \['Beauty', 'Skin'\]; expected a list of category names"),
    ("categories", [{"path": "A"}, None], r"row 0: categories \{'path': 'A'\} is not a list of category names"),
])
def test_bad_items_parquet_names_row_and_field(tmp_path: Path, column, values, message):
    items = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["a", "b"], "categories": [["A"], ["B"]]})
    items[column] = pd.Series(values, dtype=object)
    items.to_parquet(tmp_path / "items.parquet", index=False)
    with pytest.raises(DataFormatError, match=message):
        read_items_file(tmp_path / "items.parquet")


def test_parquet_categories_drop_nulls_and_blanks_like_csv(tmp_path: Path):
    pd.DataFrame({"item_id": ["i1", "i2"], "title": ["a", None],
                  "categories": [["Beauty", None, " ", " Skin "], None]}).to_parquet(tmp_path / "items.parquet")
    items = read_items_file(tmp_path / "items.parquet")
    assert items["categories"].tolist() == [["Beauty", "Skin"], []]  # were ['Beauty', 'None', ' ', ' Skin ']
    assert items["title"].tolist() == ["a", ""]


def test_an_upper_case_csv_suffix_still_counts_lines(tmp_path: Path):
    (tmp_path / "items.CSV").write_text("item_id,title\ni1,a\ni1,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"items.CSV: row 3 \(line\): item_id 'i1' appears twice"):
        read_items_file(tmp_path / "items.CSV")


def test_a_large_log_gets_the_duckdb_hint_naming_the_file_read(generic_dir: Path, tmp_path: Path, monkeypatch,
                                                                caplog):
    from gr2.data import stage
    from gr2.data.loaders import generic_folder
    from gr2.runs import RunDir

    monkeypatch.setattr(stage, "LARGE_BYTES", 0)
    with caplog.at_level("WARNING", logger="gr2.data.stage"):
        stage.run_data(RunDir(tmp_path / "run"), DataConfig(dataset=str(generic_dir), k_core=0))
    assert f"{generic_dir / 'interactions.csv'} holds 0.0 GB" in caplog.text and "data.engine=duckdb" in caplog.text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "beauty").mkdir()  # a folder named like a named dataset is not read as the generic format
    assert generic_folder("beauty") is None and generic_folder("mydata") == Path("mydata")


@pytest.mark.network
def test_movielens_100k_from_the_recbole_wheel():
    from gr2.data.loaders import load_movielens

    raw = load_movielens("ml-100k")
    assert len(raw.interactions) == 100_000 and len(raw.items) == 1682
    assert raw.items.loc[0, "title"] == "Toy Story (1995)"
    assert "Animation" in raw.items.loc[0, "categories"]
    prepared = prepare(raw, DataConfig(min_rating=4))
    assert prepared.stats["filtering"]["removed_low_rating"] > 0
