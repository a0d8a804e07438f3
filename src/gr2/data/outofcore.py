"""The data stage out of core (``data.engine: duckdb``): the files of the in-memory path
(:func:`gr2.data.prepare.prepare`), byte for byte, for interaction logs larger than memory.

DuckDB reads the generic format's ``interactions.parquet`` (one file, or a folder of Parquet parts:
:func:`gr2.data.loaders.parquet_parts`), runs every check and filter as SQL over a table in a scratch
database on disk (what exceeds its memory cap spills to disk), and streams the sorted result into
pyarrow's Parquet writer with the schema and row groups pandas' ``to_parquet`` gives. The items file
(the catalogue) is read by the in-memory loader: a catalogue fits in memory even when its log does
not. Memory then grows with users and items, not with interactions.

How each in-memory step is mirrored:

* **ids** are their text (``CAST AS VARCHAR``, pandas' ``astype(str)`` for integer and string ids);
  users are numbered in the byte order of that text, which is the order pandas sorts them in, so the
  dense ``user_id`` of the kept users is the same; items keep the items file's order.
* **file order** (ties in time) is ``_row`` = the part's index in path order << 40 | its row.
* **timestamps**: numbers as epoch seconds; ISO 8601 text and Parquet timestamp columns as dates
  (both paths to the microsecond: a finer Parquet unit is kept, an ISO string is parsed by DuckDB).
* **k-core**: the same passes (counts of one snapshot, users and items together, until a pass
  removes nothing), so ``k_core_passes`` matches; then users with fewer than 3 interactions.
* **user sample** (``max_users``): the users in order of first appearance in the file and the same
  ``numpy`` draw over their indices (``Generator.choice`` of an array draws the same indices).
* **positions** are renumbered per user in (timestamp or given position, file order).

Errors are the in-memory loader's :class:`DataFormatError` s, naming the part and its row there
(:func:`gr2.data.loaders.row_at`, as the in-memory loader names them); when a
file has several problems the first one reported may differ (unknown items are checked before
duplicates here). Resources: ``GR2_DUCKDB_MEMORY_LIMIT`` (DuckDB syntax, ``8GB``; DuckDB's default
is 80% of RAM), ``GR2_DUCKDB_THREADS`` (default: every core) and ``GR2_DUCKDB_TEMP_DIR`` (where the
scratch database and spill files go; default ``data/`` of the run, removed at the end).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gr2.checks import ConfigError
from gr2.data.config import DataConfig
from gr2.data.loaders import (
    INTERACTION_COLUMNS,
    DataFormatError,
    _find,
    _require_columns,
    parquet_parts,
    read_items_file,
    row_at,
)
from gr2.data.prepare import MIN_SEQUENCE, nothing_left, summarise
from gr2.runs import atomic_path, atomic_write_parquet

log = logging.getLogger(__name__)

ROW_BITS = 40
"""``_row = part << ROW_BITS | row in the part``: the whole table's file order in one integer."""
ROW_GROUP = 1024 * 1024
"""Rows per Parquet row group: pyarrow's default, which pandas' ``to_parquet`` writes."""
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "UHUGEINT")
_NUMBER = _INTEGER + ("FLOAT", "DOUBLE", "DECIMAL")
_JOIN_AS_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
_WHITESPACE = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"


def run_out_of_core(cfg: DataConfig, out: Path) -> dict:
    """Write ``items.parquet`` and ``interactions.parquet`` of ``cfg.dataset`` into ``out`` (atomically)
    and return the statistics of ``stats.json``."""
    folder = Path(cfg.dataset)
    if not folder.is_dir():
        raise DataFormatError(f"data.engine=duckdb reads a folder in the generic format; {cfg.dataset!r} is not one")
    inter_path = _find(folder, "interactions")
    if inter_path.suffix.lower() != ".parquet":
        raise DataFormatError(
            f"{inter_path}: data.engine=duckdb reads Parquet; convert it once, keeping ids as text: "
            f"duckdb.sql(\"COPY (FROM read_csv('{inter_path}', all_varchar=true)) TO "
            f"'{inter_path.with_suffix('.parquet')}'\") in Python, then move the CSV away")
    items_path = _find(folder, "items")
    parts = parquet_parts(inter_path)
    for part in parts:
        if part.stat().st_size == 0:
            raise DataFormatError(f"{part}: empty file")
    items = read_items_file(items_path)
    base = Path(os.environ.get("GR2_DUCKDB_TEMP_DIR") or out)
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".duckdb-", dir=base))
    try:
        with _connect(scratch) as con:
            return _Stage(con, cfg, folder.name, inter_path, parts, items_path, items, out).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _connect(scratch: Path):
    try:
        import duckdb
    except ImportError:
        raise ConfigError("data.engine=duckdb needs DuckDB: pip install -e '.[bigdata]'") from None
    con = duckdb.connect(str(scratch / "work.duckdb"))
    con.execute(f"SET temp_directory = {_literal(str(scratch / 'spill'))}")
    if os.environ.get("GR2_DUCKDB_MEMORY_LIMIT"):
        con.execute(f"SET memory_limit = {_literal(os.environ['GR2_DUCKDB_MEMORY_LIMIT'])}")
    if os.environ.get("GR2_DUCKDB_THREADS"):
        con.execute(f"SET threads = {int(os.environ['GR2_DUCKDB_THREADS'])}")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET TimeZone = 'UTC'")  # ISO dates without an offset are UTC, as pandas reads them
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Stage:
    def __init__(self, con, cfg: DataConfig, name: str, inter_path: Path, parts: list[Path], items_path: Path,
                 items: pd.DataFrame, out: Path) -> None:
        self.con, self.cfg, self.name, self.out = con, cfg, name, out
        self.inter_path, self.parts, self.items_path, self.items = inter_path, parts, items_path, items
        self.started = time.perf_counter()
        import duckdb

        self.duckdb = duckdb

    def sql(self, query: str, *args):
        return self.con.execute(query, *args)

    def step(self, what: str, *args) -> None:
        log.info("data (duckdb, %.0f s): " + what, time.perf_counter() - self.started, *args)

    def where(self, row: int) -> str:
        """``part: row N`` of a ``_row``."""
        part, index = divmod(int(row), 1 << ROW_BITS)
        return row_at(self.parts[part], index)

    def cell(self, row: int, column: str) -> object:
        """The value at a ``_row`` (``None`` when its part has no such column)."""
        part, index = divmod(int(row), 1 << ROW_BITS)
        try:
            return self.sql(f"SELECT {_ident(column)} FROM read_parquet(?) WHERE file_row_number = ?",
                            [str(self.parts[part]), index]).fetchone()[0]
        except self.duckdb.Error:
            return None

    def scan(self, query: str, *args):
        """``query`` over the parts, a part that cannot be read being the loader's error."""
        try:
            return self.sql(query, *args)
        except (self.duckdb.IOException, self.duckdb.InvalidInputException) as exc:
            raise DataFormatError(f"{self.inter_path}: cannot be read: {' '.join(str(exc).split())}") from exc

    def run(self) -> dict:
        self.read()
        filtering: dict[str, int] = {"raw_interactions": self.n_raw, "raw_items": len(self.items)}
        if self.cfg.min_rating is not None:
            if not self.has_rating:
                raise DataFormatError(f"data.min_rating is set but dataset {self.name!r} has no ratings")
            filtering["removed_low_rating"] = self.delete(
                "rating IS NULL OR rating < ?", [float(self.cfg.min_rating)])
        filtering["removed_k_core"], filtering["k_core_passes"] = self.k_core(self.cfg.k_core)
        filtering["removed_short_users_interactions"] = self.delete(
            f"uid IN (SELECT uid FROM inter GROUP BY uid HAVING count(*) < {MIN_SEQUENCE})")
        if self.count() == 0:
            raise nothing_left(self.name, filtering, self.cfg)
        if self.cfg.max_users is not None:
            first_seen = self.sql("SELECT uid FROM inter GROUP BY uid ORDER BY min(_row)").fetchnumpy()["uid"]
            if self.cfg.max_users < len(first_seen):
                rng = np.random.default_rng(self.cfg.seed)
                keep = pa.table({"uid": first_seen[rng.choice(len(first_seen), size=self.cfg.max_users,
                                                              replace=False)]})
                self.con.register("sampled_users", keep)
                filtering["removed_user_sample"] = self.delete("uid NOT IN (SELECT uid FROM sampled_users)")
                self.con.unregister("sampled_users")
        used = self.sql("SELECT DISTINCT iid FROM inter ORDER BY iid").fetchnumpy()["iid"].astype(np.int64)
        items = self.items.iloc[used].reset_index(drop=True)  # used: sorted, unique row numbers
        filtering["removed_items_without_interactions"] = len(self.items) - len(items)
        items.insert(0, "item_id", np.arange(len(items), dtype=np.int64))
        self.sql("CREATE TABLE kept AS SELECT k.uid, (row_number() OVER (ORDER BY k.uid) - 1)::BIGINT AS user_id, "
                 "users.u FROM (SELECT DISTINCT uid FROM inter) k JOIN users USING (uid)")
        lengths = self.sql("SELECT count(*) AS n FROM inter GROUP BY uid ORDER BY uid").fetchnumpy()["n"]
        stats = summarise(self.name, items, pd.Series(lengths.astype(np.int64)), filtering, self.cfg)
        self.step("%d users, %d items, %d interactions after filtering", stats["users"], stats["items"],
                  stats["interactions"])
        atomic_write_parquet(self.out / "items.parquet", items)
        self.write_interactions()
        self.step("wrote %s", self.out / "interactions.parquet")
        return stats

    # -- reading and checking ------------------------------------------------------------------
    def read(self) -> None:
        files = "[" + ", ".join(_literal(str(p)) for p in self.parts) + "]"
        self.src = f"read_parquet({files}, union_by_name = true)"  # not a view: it hides file_index
        described = self.scan(f"DESCRIBE SELECT * FROM {self.src}").fetchall()
        columns: dict[str, tuple[str, str]] = {}
        self.raw_names: dict[str, str] = {}
        for raw_name, kind, *_ in described:
            name = str(raw_name).strip()
            if name in columns:
                raise DataFormatError(f"{self.inter_path}: column {name!r} appears twice in the header; "
                                      "expected each column once")
            columns[name] = (_ident(raw_name), str(kind).upper())
            self.raw_names[name] = str(raw_name)
        self.n_raw = int(self.scan(f"SELECT count(*) FROM {self.src}").fetchone()[0])
        if self.n_raw == 0:
            raise DataFormatError(f"{self.inter_path}: no rows")
        _require_columns(pd.DataFrame(columns=list(columns)), self.inter_path, INTERACTION_COLUMNS,
                         extra_one_of=("timestamp", "position"))
        for column in ("user_id", "item_id"):
            ident, kind = columns[column]
            if not _scalar(kind):
                row = self.sql(f"SELECT {self.row_expr} FROM {self.src} WHERE {ident} IS NOT NULL LIMIT 1").fetchone()
                where = self.where(row[0]) if row else f"{self.inter_path}: row 0"
                raise DataFormatError(f"{where}: {column} of type {kind} is not an id (a string or number); "
                                      "expected one value per row")
        self.has_timestamp, self.has_position = "timestamp" in columns, "position" in columns
        self.has_rating = "rating" in columns
        user, item = (f"CAST({columns[c][0]} AS VARCHAR)" for c in ("user_id", "item_id"))
        checks = {  # in the in-memory loader's order: its first failing check is the error
            "user": _missing_id(*columns["user_id"]),
            "item": _missing_id(*columns["item_id"]),
        }
        timestamp = "NULL::DOUBLE"
        if self.has_timestamp:
            timestamp, infinite, bad = _timestamp(*columns["timestamp"])
            checks["infinite"], checks["timestamp"] = infinite, bad
        position = None
        if self.has_position:
            position, checks["position"] = _position(*columns["position"])
        rating = "NULL::DOUBLE"
        if self.has_rating:
            number = f"TRY_CAST({columns['rating'][0]} AS DOUBLE)"
            rating = f"CASE WHEN isnan({number}) THEN NULL ELSE {number} END"
        found = self.scan("SELECT " + ", ".join(f"min({self.row_expr}) FILTER (WHERE {cond}), count(*) FILTER "
                                               f"(WHERE {cond})" for cond in checks.values())
                         + f" FROM {self.src}").fetchone()
        self.step("read %d interactions from %d Parquet file(s), checked", self.n_raw, len(self.parts))
        for k, what in enumerate(checks):
            row, n = found[2 * k], found[2 * k + 1]
            if n:
                self.raise_bad(what, row, n)

        # join keys: integer ids as integers (cheaper than their text, which is the id all the same)
        user_key, item_key = (f"{columns[c][0]}::BIGINT" if columns[c][1] in _JOIN_AS_INTEGER else text
                              for c, text in (("user_id", user), ("item_id", item)))
        self.sql(f"CREATE TABLE users AS SELECT k, u, (row_number() OVER (ORDER BY u) - 1)::INTEGER AS uid "
                 f"FROM (SELECT k, CAST(k AS VARCHAR) AS u FROM (SELECT DISTINCT {user_key} AS k FROM {self.src}))")
        self.con.register("items_file", pa.table({"raw_id": pa.array(self.items["raw_id"].to_numpy(str), pa.string()),
                                                  "iid": np.arange(len(self.items), dtype=np.int32)}))
        if columns["item_id"][1] in _JOIN_AS_INTEGER:  # only an id written as an integer is one ("007" is not 7)
            self.sql("CREATE TABLE items AS SELECT raw_id, iid, TRY_CAST(raw_id AS BIGINT) AS k FROM items_file "
                     "WHERE CAST(TRY_CAST(raw_id AS BIGINT) AS VARCHAR) = raw_id")
        else:
            self.sql("CREATE TABLE items AS SELECT raw_id, iid, raw_id AS k FROM items_file")
        self.con.unregister("items_file")
        extra = "".join(f", {expr} AS {name}" for name, expr, on in (
            ("ts", timestamp, self.has_timestamp), ("pos", position, self.has_position),
            ("rating", rating, self.has_rating)) if on)
        self.sql(f"CREATE TABLE inter AS SELECT users.uid, items.iid{extra}, {self.row_expr} AS _row FROM {self.src} "
                 f"JOIN users ON {user_key} = users.k LEFT JOIN items ON {item_key} = items.k")
        self.step("loaded: %d users", self.sql("SELECT count(*) FROM users").fetchone()[0])
        row, n = self.sql("SELECT min(_row), count(*) FROM inter WHERE iid IS NULL").fetchone()
        if n:
            raise DataFormatError(f"{self.where(row)}: item_id {str(self.cell(row, self.raw_names['item_id']))!r} "
                                  f"is not in {self.items_path} ({n} interaction(s) name unknown items)")
        key = "ts" if self.has_timestamp else "pos"
        if self.sql(f"SELECT count(*) FROM (SELECT 1 FROM inter GROUP BY uid, iid, {key} HAVING count(*) > 1)"
                    ).fetchone()[0]:
            row = self.sql(f"SELECT min(_row) FROM (SELECT _row, row_number() OVER (PARTITION BY uid, iid, {key} "
                           f"ORDER BY _row) AS n FROM inter) WHERE n = 2").fetchone()[0]
            uid, iid = self.sql("SELECT u, raw_id FROM inter JOIN users USING (uid) JOIN items USING (iid) "
                                "WHERE _row = ?", [row]).fetchone()
            raise DataFormatError(f"{self.where(row)}: duplicate interaction (user {uid!r}, item {iid!r}, same "
                                  f"{'timestamp' if self.has_timestamp else 'position'}); remove duplicate rows")
        self.order = ("pos" if self.has_position else "ts") + ", _row"
        self.step("checked ids and duplicates")

    @property
    def row_expr(self) -> str:
        return f"((file_index::BIGINT << {ROW_BITS}) | file_row_number::BIGINT)"

    def raise_bad(self, what: str, row: int, n: int) -> None:
        where = self.where(row)
        column = {"user": "user_id", "item": "item_id", "infinite": "timestamp", "timestamp": "timestamp",
                  "position": "position"}[what]
        value = self.cell(row, self.raw_names[column])
        if what in ("user", "item"):
            raise DataFormatError(f"{where}: {column} is missing or blank ({n} row(s)); every interaction row "
                                  "needs one")
        if what == "infinite":
            raise DataFormatError(f"{where}: timestamp {value!r} is not a finite number of epoch seconds")
        if what == "timestamp":
            raise DataFormatError(f"{where}: timestamp {value!r} is neither a number (epoch seconds) nor an "
                                  "ISO 8601 date")
        raise DataFormatError(f"{where}: position {value!r} is not a whole number (positions order each "
                              "user's interactions: 0, 1, 2, ...)")

    # -- filters -------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.sql("SELECT count(*) FROM inter").fetchone()[0])

    def delete(self, condition: str, params: list | None = None) -> int:
        removed = self.sql(f"DELETE FROM inter WHERE {condition}", params or []).fetchone()[0]
        return int(removed)

    def k_core(self, k: int) -> tuple[int, int]:
        """:func:`gr2.data.prepare.k_core`'s passes: counts of one snapshot, users and items together.
        Returns the interactions removed and the number of passes."""
        passes = removed_total = 0
        if k <= 1:
            return removed_total, passes
        while True:
            passes += 1
            for key, table in (("uid", "few_users"), ("iid", "few_items")):
                self.sql(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {key} FROM inter GROUP BY {key} "
                         f"HAVING count(*) < {k}")
            removed = self.delete("uid IN (SELECT uid FROM few_users) OR iid IN (SELECT iid FROM few_items)")
            removed_total += removed
            self.step("%d-core pass %d removed %d interactions", k, passes, removed)
            if not removed:
                return removed_total, passes

    # -- output --------------------------------------------------------------------------------
    def write_interactions(self) -> None:
        """Write ``interactions.parquet``; an item's ``item_id`` is its rank among the ``iid`` s left in
        ``inter`` (the order of ``items.parquet``), derived here rather than stored a second time."""
        rating = ", i.rating" if self.has_rating else ""
        timestamp = "i.ts" if self.has_timestamp else "NULL::DOUBLE"
        query = (f"SELECT k.user_id, m.item_id, (row_number() OVER (PARTITION BY i.uid ORDER BY {self.order}) - 1)"
                 f"::BIGINT AS position, {timestamp} AS timestamp, k.u AS raw_user_id{rating} "
                 "FROM inter i JOIN kept k USING (uid) JOIN (SELECT iid, (row_number() OVER (ORDER BY iid) - 1)::BIGINT "
                 "AS item_id FROM (SELECT DISTINCT iid FROM inter)) m USING (iid) ORDER BY k.user_id, position")
        schema = interactions_schema(self.has_rating)
        with atomic_path(self.out / "interactions.parquet") as tmp:
            reader = self.con.sql(query).to_arrow_reader(ROW_GROUP)
            with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
                pending: list[pa.RecordBatch] = []
                rows = 0
                for batch in reader:
                    pending.append(batch)
                    rows += batch.num_rows
                    while rows >= ROW_GROUP:
                        table = pa.Table.from_batches(pending)
                        writer.write_table(_cast(table.slice(0, ROW_GROUP), schema))
                        rest = table.slice(ROW_GROUP)
                        pending, rows = rest.to_batches(), rest.num_rows
                if rows:
                    writer.write_table(_cast(pa.Table.from_batches(pending), schema))


def interactions_schema(rating: bool) -> pa.Schema:
    """The Arrow schema (with pandas' metadata) that ``to_parquet`` writes for ``interactions.parquet``."""
    template = {"user_id": np.zeros(0, np.int64), "item_id": np.zeros(0, np.int64),
                "position": np.zeros(0, np.int64), "timestamp": np.zeros(0, float),
                "raw_user_id": np.zeros(0, str)}
    if rating:
        template["rating"] = np.zeros(0, float)
    return pa.Schema.from_pandas(pd.DataFrame(template), preserve_index=False)


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.rename_columns(schema.names).cast(schema).combine_chunks()


def _scalar(kind: str) -> bool:
    return not (kind.endswith("]") or kind.startswith(("STRUCT", "MAP", "UNION")))


def _missing_id(ident: str, kind: str) -> str:
    """The check of a missing or blank id (a number's text is never blank)."""
    if kind.split("(")[0] in _NUMBER:
        return f"{ident} IS NULL OR isnan({ident}::DOUBLE)" if kind in ("FLOAT", "DOUBLE") else f"{ident} IS NULL"
    text = f"CAST({ident} AS VARCHAR)"
    return f"{text} IS NULL OR trim({text}, {_WHITESPACE}) = ''"


def _timestamp(ident: str, kind: str) -> tuple[str, str, str]:
    """(seconds, infinite-check, unreadable-check) of a timestamp column of DuckDB type ``kind``."""
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        unit, scale = {"TIMESTAMP_NS": ("epoch_ns", 1e9), "TIMESTAMP_MS": ("epoch_ms", 1e3),
                       "TIMESTAMP_S": ("epoch", 1.0)}.get(kind, ("epoch_us", 1e6))
        value = f"{ident}::TIMESTAMP" if kind == "DATE" else ident
        return f"({unit}({value})::DOUBLE / {scale!r})", "false", f"{ident} IS NULL"
    number = f"TRY_CAST({ident} AS DOUBLE)"
    number = f"(CASE WHEN isnan({number}) THEN NULL ELSE {number} END)"
    if kind.split("(")[0] in _NUMBER:
        return number, f"isinf({number})", f"{number} IS NULL"
    date = f"(epoch_us(TRY_CAST({ident} AS TIMESTAMPTZ))::DOUBLE / 1e6)"
    return f"coalesce({number}, {date})", f"isinf({number})", f"{number} IS NULL AND {date} IS NULL"


def _position(ident: str, kind: str) -> tuple[str, str]:
    """(whole-number value, bad-value check) of a ``position`` column of DuckDB type ``kind``."""
    if kind in _INTEGER:
        return f"{ident}::BIGINT", f"{ident} IS NULL"
    number = f"TRY_CAST({ident} AS DOUBLE)"
    return (f"{number}::BIGINT",
            f"{number} IS NULL OR isnan({number}) OR isinf({number}) OR {number} <> floor({number})")
