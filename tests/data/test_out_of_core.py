"""The out-of-core data stage (``data.engine: duckdb``, :mod:`gr2.data.outofcore`) writes the same
``data/`` files as the in-memory one, byte for byte, and stops on the same bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_generic

from gr2.checks import ConfigError
from gr2.config import load_config
from gr2.data.config import DataConfig
from gr2.data.loaders import DataFormatError
from gr2.data.stage import run_data
from gr2.fingerprints import NEUTRAL_FIELDS
from gr2.runs import RunDir

duckdb = pytest.importorskip("duckdb")

FILES = ("items.parquet", "interactions.parquet", "stats.json")


def run_both(folder: Path, tmp_path: Path, pandas_folder: Path | None = None, **fields) -> dict:
    """Run the data stage with both engines (the pandas one on ``pandas_folder`` if given) and assert
    that every file is the same, byte for byte. Returns the statistics."""
    out = {}
    for engine, source in (("pandas", pandas_folder or folder), ("duckdb", folder)):
        run = RunDir(tmp_path / f"run-{engine}")
        run_data(run, DataConfig(dataset=str(source), engine=engine, **fields))
        out[engine] = {name: (run.path / "data" / name).read_bytes() for name in FILES}
    for name in FILES:
        if name.endswith(".parquet"):  # the frames first: a difference is easier to read there
            a, b = (pd.read_parquet(tmp_path / f"run-{e}" / "data" / name) for e in ("pandas", "duckdb"))
            pd.testing.assert_frame_equal(a, b)
        else:
            assert out["pandas"][name].decode() == out["duckdb"][name].decode()
        assert out["pandas"][name] == out["duckdb"][name], f"{name}: the same table, not the same bytes"
    return json.loads(out["duckdb"]["stats.json"])


def to_parquet_folder(folder: Path) -> Path:
    """The README's conversion of a CSV folder: interactions with DuckDB, ids kept as text."""
    target = folder.parent / "as-parquet" / folder.name  # the same name: stats.json names the dataset
    target.mkdir(parents=True)
    for name in ("items.csv",):
        (target / name).write_bytes((folder / name).read_bytes())
    duckdb.execute(f"COPY (FROM read_csv('{folder / 'interactions.csv'}', all_varchar=true)) "
                   f"TO '{target / 'interactions.parquet'}'")
    return target


def synthetic_log(folder: Path, n_users: int = 60, n_items: int = 40, seed: int = 0, parts: int = 4,
                  timestamp: str = "number", position: bool = False, rating: bool = False,
                  int_users: bool = False) -> Path:
    """A log with ties in time, ids that sort differently as text and as numbers (mixed case, non-ASCII),
    popular and rare items (several k-core passes), split into Parquet parts under a folder."""
    rng = np.random.default_rng(seed)
    names = [f"{c}{u}" for u, c in zip(range(n_users), rng.choice(list("aBcÜé9 "), n_users))]
    if int_users:  # numbers: ordered as text ("10" before "9"), as the in-memory path orders them
        names = list(rng.permutation(n_users) * 7)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1
    rows = []
    for u in range(n_users):
        length = int(rng.integers(1, 12))
        items = rng.choice(n_items, size=min(length, n_items), replace=False, p=popularity / popularity.sum())
        times = np.sort(rng.integers(0, 6, size=len(items)))  # many ties
        rows += [(names[u], int(i), int(t)) for i, t in zip(items, times)]
    order = rng.permutation(len(rows))
    df = pd.DataFrame([rows[k] for k in order], columns=["user_id", "item_id", "t"])
    if timestamp == "number":
        df["timestamp"] = df["t"] * 3600 + 1.7e9
    elif timestamp == "iso":
        df["timestamp"] = [f"2024-01-0{1 + t}T10:00:00.{t}5+02:00" if t % 2 else f"2024-01-0{1 + t} 10:00:00"
                           for t in df["t"]]
    elif timestamp in ("us", "ms"):
        df["timestamp"] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(df["t"] * 3.5, unit="s")).astype(
            f"datetime64[{timestamp}]")
    if position:
        df["position"] = df["t"]  # ties in the given order too: the file order breaks them
    if rating:
        df["rating"] = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, np.nan], size=len(df))
    df = df.drop(columns="t")
    target = folder / "interactions.parquet"
    target.mkdir(parents=True)
    (target / "sub").mkdir()
    names_of_parts = ["part-10.parquet", "part-2.parquet", "sub/a.parquet", "Z.parquet"][:parts]
    for name, rows_of_part in zip(names_of_parts, np.array_split(np.arange(len(df)), len(names_of_parts))):
        df.iloc[rows_of_part].to_parquet(target / name, index=False)
    (target / "_SUCCESS").write_text("")
    pd.DataFrame({"item_id": np.arange(n_items + 5),
                  "title": [f"item {i}" if i % 7 else "" for i in range(n_items + 5)],
                  "categories": [["A", f"B{i % 3}"] if i % 5 else [] for i in range(n_items + 5)]}
                 ).to_parquet(folder / "items.parquet", index=False)
    return folder


def test_the_generic_test_data_gives_the_same_files(tmp_path):
    csv = write_generic(tmp_path / "mydata")
    stats = run_both(to_parquet_folder(csv), tmp_path, pandas_folder=csv, k_core=2)
    assert stats["users"] == 40 and stats["interactions"] == 280


@pytest.mark.parametrize("fields", [
    {"k_core": 0},
    {"k_core": 3},
    {"k_core": 2, "max_users": 15, "seed": 1},
    {"k_core": 0, "max_users": 1000},
    {"k_core": 2, "max_history": 3},
])
def test_a_log_with_ties_gives_the_same_files(tmp_path, fields):
    folder = synthetic_log(tmp_path / "log")
    stats = run_both(folder, tmp_path, **fields)
    if fields["k_core"] == 3:
        assert stats["filtering"]["k_core_passes"] >= 3, "the log should need several k-core passes"
    if "max_users" in fields and fields["max_users"] < 100:
        assert stats["users"] == fields["max_users"] and stats["filtering"]["removed_user_sample"] > 0


@pytest.mark.parametrize("kind", [
    {"timestamp": "none", "position": True},
    {"timestamp": "number", "position": True},
    {"timestamp": "iso"},
    {"timestamp": "us"},
    {"timestamp": "ms"},
    {"timestamp": "number", "rating": True},
    {"timestamp": "number", "int_users": True},
])
def test_positions_dates_and_ratings_give_the_same_files(tmp_path, kind):
    folder = synthetic_log(tmp_path / "log", seed=3, **kind)
    fields = {"k_core": 2}
    if kind.get("rating"):
        fields["min_rating"] = 3
    stats = run_both(folder, tmp_path, **fields)
    inter = pd.read_parquet(tmp_path / "run-duckdb" / "data" / "interactions.parquet")
    assert inter["timestamp"].isna().all() == (kind["timestamp"] == "none")
    if kind.get("rating"):
        assert stats["filtering"]["removed_low_rating"] > 0 and (inter["rating"] >= 3).all()


def test_one_parquet_file_and_many_parts_are_the_same_table(tmp_path):
    folder = synthetic_log(tmp_path / "log")
    single = tmp_path / "single" / "log"  # the same name: stats.json names the dataset
    single.mkdir(parents=True)
    (single / "items.parquet").write_bytes((folder / "items.parquet").read_bytes())
    pd.read_parquet(folder / "interactions.parquet").to_parquet(single / "interactions.parquet", index=False)
    run_both(single, tmp_path / "a", pandas_folder=folder, k_core=2)


def bad(tmp_path: Path, change, parts: int) -> tuple[Path, Path, int]:
    """A log changed by ``change`` (``None``: a part that is not Parquet), as one part or as two whose
    second (``part-2.parquet``, after ``part-10.parquet`` in path order) holds every row from 2 on.
    Returns the folder, the part holding the changed rows and the table row where that part starts."""
    folder = synthetic_log(tmp_path / "bad", parts=1)
    part = folder / "interactions.parquet" / "part-10.parquet"
    df = change(pd.read_parquet(part))
    if df is None:
        (part.parent / "part-3.parquet").write_bytes(b"PAR1 but not Parquet")
        return folder, part, 0
    if parts == 1:
        df.to_parquet(part, index=False)
        return folder, part, 0
    second = part.parent / "part-2.parquet"
    df.iloc[:2].to_parquet(part, index=False)
    df.iloc[2:].to_parquet(second, index=False)
    return folder, second, 2


@pytest.mark.parametrize("change, message, where", [
    (lambda df: pd.concat([df, df.iloc[[3]]]), "duplicate interaction (user", "last"),
    (lambda df: df.assign(item_id=df["item_id"].where(df.index != 5, 999)), "item_id '999' is not in", 5),
    (lambda df: df.assign(user_id=df["user_id"].where(df.index != 2, "  ")), "user_id is missing or blank", 2),
    (lambda df: df.assign(item_id=df["item_id"].where(df.index != 7, None)), "item_id is missing or blank", 7),
    (lambda df: df.assign(timestamp=df["timestamp"].where(df.index != 4, np.inf)),
     "timestamp inf is not a finite number", 4),
    (lambda df: df.assign(timestamp=df["timestamp"].astype(str).where(df.index != 4, "soon")),
     "timestamp 'soon' is neither a number (epoch seconds) nor an ISO 8601 date", 4),
    (lambda df: df.assign(timestamp=df["timestamp"].where(df.index != 8, np.nan)), "is neither a number", 8),
    (lambda df: df.assign(position=np.where(df.index == 6, 1.5, 1.0)), "position 1.5 is not a whole number", 6),
    (lambda df: df.drop(columns="item_id"), "missing column(s) ['item_id']", None),
    (lambda df: df.rename(columns={"timestamp": "Time Stamp"}), "missing column(s) ['timestamp or position']", None),
    (lambda df: df.iloc[:0], "no rows", None),
    (lambda df: None, "cannot be read", None),  # bad() writes a part that is not Parquet
])
@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.filterwarnings("ignore:Parsing integer or float values:DeprecationWarning")  # pandas: NaN in floats
def test_bad_input_stops_both_engines_naming_the_row(tmp_path, change, message, where, parts):
    folder, part, start = bad(tmp_path, change, parts)
    if where == "last":
        where = len(pd.read_parquet(folder / "interactions.parquet")) - 1
    for engine in ("pandas", "duckdb"):
        with pytest.raises(DataFormatError) as err:
            run_data(RunDir(tmp_path / engine), DataConfig(dataset=str(folder), engine=engine, k_core=0))
        assert message in str(err.value), (engine, str(err.value))
        if where is not None:  # both engines: the part and the row within it (not the row of the table)
            assert str(err.value).startswith(f"{part}: row {where - start}: "), (engine, str(err.value))


def test_a_filter_that_leaves_nobody_and_min_rating_without_ratings(tmp_path):
    folder = synthetic_log(tmp_path / "log")
    for engine in ("pandas", "duckdb"):
        with pytest.raises(DataFormatError, match="no user is left after filtering"):
            run_data(RunDir(tmp_path / engine), DataConfig(dataset=str(folder), engine=engine, k_core=40))
        with pytest.raises(DataFormatError, match="has no ratings"):
            run_data(RunDir(tmp_path / engine), DataConfig(dataset=str(folder), engine=engine, min_rating=3))


def test_the_duckdb_engine_wants_parquet_and_leaves_no_scratch_files(tmp_path):
    csv = write_generic(tmp_path / "mydata")
    with pytest.raises(DataFormatError, match="reads Parquet; convert it once"):
        run_data(RunDir(tmp_path / "run"), DataConfig(dataset=str(csv), engine="duckdb"))
    run_data(RunDir(tmp_path / "ok"), DataConfig(dataset=str(to_parquet_folder(csv)), engine="duckdb"))
    assert sorted(p.name for p in (tmp_path / "ok" / "data").iterdir()) == sorted(FILES)


def test_the_engine_is_a_checked_neutral_config_field():
    assert NEUTRAL_FIELDS["engine"] == DataConfig().engine == "pandas"
    assert load_config(None, ["data.engine=duckdb", "data.dataset=logs/big"]).data.engine == "duckdb"
    with pytest.raises(ConfigError, match="engine must be 'pandas' or 'duckdb'"):
        load_config(None, ["data.engine=polars"])
    with pytest.raises(ConfigError, match="engine 'duckdb' reads a folder in the generic format"):
        load_config(None, ["data.engine=duckdb"])


def test_integer_ids_match_only_the_items_written_as_that_integer(tmp_path):
    folder = synthetic_log(tmp_path / "log")
    items = pd.read_parquet(folder / "items.parquet")
    items["item_id"] = ["00" if i == 0 else str(i) for i in items["item_id"]]  # "00" is not item 0
    items.to_parquet(folder / "items.parquet", index=False)
    for engine in ("pandas", "duckdb"):
        with pytest.raises(DataFormatError, match="item_id '0' is not in"):
            run_data(RunDir(tmp_path / engine), DataConfig(dataset=str(folder), engine=engine))
    items["item_id"] = [str(i) for i in range(len(items))]  # text ids, integer ids in the log: the same
    items.to_parquet(folder / "items.parquet", index=False)
    run_both(folder, tmp_path / "same", k_core=2)
