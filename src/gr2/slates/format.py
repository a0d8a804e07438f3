"""The slates file: logged re-ranking requests with graded labels, read and checked.

One row per request (``.parquet``, ``.jsonl`` or ``.csv``):

================== ======== ==============================================================
column             required meaning
================== ======== ==============================================================
``user_id``        yes      the user (any string or number)
``history``        yes      item ids the user interacted with before the request, oldest first
``candidates``     yes      the slate: item ids in the production order (best first)
``labels``         yes      one per candidate: 0 none, 1 click, 2 click + conversion
``scores``         no       one production score per candidate (missing: NaN)
``history_timestamps`` no   one time per history item (epoch seconds)
``timestamp``      no       time of the request; orders a user's requests (else: file order)
``request_id``     no       unique name of the request (else: its 0-based row number)
``split``          no       ``train``, ``val`` or ``test`` (else: a seeded split of users)
================== ======== ==============================================================

Item ids are matched as strings against ``item_id`` of the items file. In CSV a list cell is a
JSON array (``["a", "b"]``) or whitespace-separated ids (``a b``). Other columns are ignored.

Input that breaks the format raises :class:`SlateFormatError` naming the file, the row and the
field: a file that is not UTF-8 or not valid JSON/CSV, a missing column, a list field that is not
a list, a ``user_id`` or ``request_id`` that is a list, labels missing or not one per candidate, a
label other than 0/1/2, a number too large for a float, scores or history times not one per item,
an infinite time, history times that go back in time or come after the request's ``timestamp``,
an item that is not in the items file, the same candidate twice in a slate, a repeated
``request_id``, an unknown ``split``. Usable rows that cannot teach or measure a ranking are
**dropped and counted** (:data:`DROP_REASONS`, in the order they are checked), never silently.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.data.loaders import DataFormatError, _first_bad_byte, read_table

log = logging.getLogger(__name__)

__all__ = ["DROP_REASONS", "GRADES", "SPLITS", "SlateFormatError", "load_slates", "read_rows"]

REQUIRED = ("user_id", "history", "candidates", "labels")
GRADES = (0, 1, 2)
SPLITS = ("train", "val", "test")
DROP_REASONS = {
    "empty_history": "no history: nothing to re-rank from",
    "history_has_positive": "a positive candidate is already in the history (the label is given away)",
    "no_positive": "no candidate with label > 0: every order scores the same",
    "no_negative": "every candidate is positive: every order scores the same",
    "other_length": "a slate length other than the most common one (the stages need one K)",
}
"""Why a row is dropped (first matching reason counts)."""


class SlateFormatError(DataFormatError):
    """A slates file that does not match the documented format."""


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's rows as dicts and each row's human position (``line N`` or ``row N``)."""
    if not path.exists():
        raise SlateFormatError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, where = [], []
        try:
            with path.open(encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is read as pandas reads CSV
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except (ValueError, RecursionError) as exc:  # also: an int of > 4300 digits, deep nesting
                        why = (exc.msg if isinstance(exc, json.JSONDecodeError)
                               else "a number too long or nesting too deep")
                        raise SlateFormatError(f"{path}: line {lineno}: not valid JSON ({why})") from None
                    if not isinstance(row, dict):
                        raise SlateFormatError(f"{path}: line {lineno}: expected a JSON object per line")
                    rows.append(row)
                    where.append(f"line {lineno}")
        except UnicodeDecodeError:
            raise SlateFormatError(f"{path}: not UTF-8 text ({_first_bad_byte(path)}): save the file as UTF-8") from None
        return rows, where
    if suffix in (".parquet", ".csv"):
        try:
            df, _ = read_table(path)  # the data loader's reading and checks (UTF-8, CSV width, no rows)
        except DataFormatError as exc:
            raise SlateFormatError(str(exc)) from exc.__cause__
        first = 2 if suffix == ".csv" else 0  # CSV: the header is line 1
        label = "line" if suffix == ".csv" else "row"
        return df.to_dict("records"), [f"{label} {i + first}" for i in range(len(df))]
    raise SlateFormatError(f"{path}: expected a .parquet, .jsonl or .csv file")


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _missing(value: Any) -> bool:
    """Null, or a blank CSV cell."""
    return _null(value) or (isinstance(value, str) and value.strip() == "")


def _as_list(value: Any, field: str, at: str) -> list[Any]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, str):  # a CSV cell
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SlateFormatError(f"{at}: {field}: not a JSON array ({exc.msg})") from exc
            if isinstance(parsed, list):
                return parsed
        return text.split()
    raise SlateFormatError(f"{at}: {field}: expected a list, got {value!r}")


def _numbers(values: list[Any], field: str, at: str) -> list[float]:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise SlateFormatError(f"{at}: {field}: {v!r} is not a number") from None
        except OverflowError:  # an int beyond float's range (JSON allows any length)
            raise SlateFormatError(f"{at}: {field}: {str(v)[:20]}... ({len(str(v))} digits) is too large a "
                                   "number") from None
        out.append(x)
    return out


def _labels(value: Any, k: int, at: str) -> list[int]:
    if _missing(value):
        raise SlateFormatError(f"{at}: labels: missing; expected {k} labels (one per candidate, 0/1/2)")
    values = _as_list(value, "labels", at)
    if len(values) != k:
        raise SlateFormatError(f"{at}: labels: {len(values)} labels for {k} candidates; expected one per candidate")
    out = []
    for x in _numbers(values, "labels", at):
        if x not in GRADES:
            raise SlateFormatError(f"{at}: labels: {x:g} is not a grade; expected 0 (none), 1 (click) or "
                                   "2 (click + conversion)")
        out.append(int(x))
    return out


def _parse_row(row: dict[str, Any], at: str, known: set[str], items_path: Path | str) -> dict[str, Any]:
    """One row, checked: ids as strings, labels as ints, scores/times as floats (NaN when absent)."""
    user = row["user_id"]
    if _missing(user):
        raise SlateFormatError(f"{at}: user_id: missing")
    _check_scalar(user, "user_id", at)
    if _null(row["history"]):  # an empty list (or a blank CSV cell) is an empty history
        raise SlateFormatError(f"{at}: history: missing; expected a list of item ids (empty: [])")
    history = [str(i) for i in _as_list(row["history"], "history", at)]
    if _null(row["candidates"]):
        raise SlateFormatError(f"{at}: candidates: missing; expected a list of item ids")
    candidates = [str(i) for i in _as_list(row["candidates"], "candidates", at)]
    if not candidates:
        raise SlateFormatError(f"{at}: candidates: empty; expected the slate's item ids")
    dup = [c for c, n in Counter(candidates).items() if n > 1]
    if dup:
        raise SlateFormatError(f"{at}: candidates: item {dup[0]!r} appears {candidates.count(dup[0])} times; "
                               "expected each candidate once per slate")
    for field, ids in (("candidates", candidates), ("history", history)):
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SlateFormatError(f"{at}: {field}: item {unknown[0]!r} is not in the items file {items_path} "
                                   f"({len(unknown)} unknown in this row)")
    k = len(candidates)
    labels = _labels(row.get("labels"), k, at)
    scores = [math.nan] * k
    if not _missing(row.get("scores")):
        scores = _numbers(_as_list(row["scores"], "scores", at), "scores", at)
        if len(scores) != k:
            raise SlateFormatError(f"{at}: scores: {len(scores)} scores for {k} candidates; expected one per "
                                   "candidate (or leave the cell empty)")
    times = [math.nan] * len(history)
    if not _missing(row.get("history_timestamps")):
        times = _numbers(_as_list(row["history_timestamps"], "history_timestamps", at), "history_timestamps", at)
        if len(times) != len(history):
            raise SlateFormatError(f"{at}: history_timestamps: {len(times)} times for {len(history)} history "
                                   "items; expected one per history item")
    timestamp = math.nan
    if not _missing(row.get("timestamp")):
        timestamp = _numbers([row["timestamp"]], "timestamp", at)[0]
    _check_times(history, times, timestamp, at)
    split = None
    if "split" in row:
        split = None if _missing(row["split"]) else str(row["split"]).strip()
        if split not in SPLITS:
            raise SlateFormatError(f"{at}: split: {row['split']!r}; expected one of {list(SPLITS)}")
    return {"user_id": str(user), "history": history, "history_timestamps": times, "timestamp": timestamp,
            "candidates": candidates, "labels": labels, "scores": scores, "split": split}


def _check_scalar(value: Any, field: str, at: str) -> None:
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise SlateFormatError(f"{at}: {field}: expected a string or number, got {value!r}")


def _check_times(history: list[str], times: list[float], timestamp: float, at: str) -> None:
    """Times (missing: NaN) are finite; the history is oldest first and before the request."""
    for field, values in (("timestamp", [timestamp]), ("history_timestamps", times)):
        bad = [t for t in values if math.isinf(t)]
        if bad:
            raise SlateFormatError(f"{at}: {field}: {bad[0]} is not a finite time (epoch seconds)")
    known = [(j, t) for j, t in enumerate(times) if not math.isnan(t)]  # j: 0-based, named 1-based
    for (i, before), (j, t) in pairwise(known):
        if t < before:
            raise SlateFormatError(f"{at}: history_timestamps: history item {j + 1} ({history[j]!r}) at {t:.15g} "
                                   f"is older than item {i + 1} ({before:.15g}); expected the history oldest first")
    late = [(j, t) for j, t in known if t > timestamp]  # none against a NaN timestamp
    if late:
        j, t = late[0]
        raise SlateFormatError(f"{at}: history_timestamps: history item {j + 1} ({history[j]!r}) at {t:.15g} is "
                               f"after the request's timestamp {timestamp:.15g}; expected a history from before "
                               "the request")


def _drop_reason(slate: dict[str, Any]) -> str | None:
    labels = slate["labels"]
    positives = {c for c, g in zip(slate["candidates"], labels) if g > 0}
    if not slate["history"]:
        return "empty_history"
    if positives & set(slate["history"]):
        return "history_has_positive"
    if not positives:
        return "no_positive"
    if len(positives) == len(labels):
        return "no_negative"
    return None


def load_slates(path: str | Path, items: pd.DataFrame,
                items_path: str | Path = "the items file") -> tuple[pd.DataFrame, dict[str, int]]:
    """Read and check a slates file against ``items`` (:func:`gr2.data.loaders.read_items_file` of
    ``items_path``, which error messages name).

    Returns the kept slates (columns ``request_id``, ``user_id``, ``history``,
    ``history_timestamps``, ``timestamp``, ``candidates``, ``labels``, ``scores``, ``split`` (``None``
    when the file has none), ``where``; ids are the file's strings) and the counts: ``rows``, one per
    :data:`DROP_REASONS` key, ``kept`` and ``k`` (candidates per slate).
    """
    path = Path(path)
    rows, where = read_rows(path)
    if not rows:
        raise SlateFormatError(f"{path}: no rows")
    columns = set().union(*(r.keys() for r in rows))
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise SlateFormatError(f"{path}: missing column(s) {missing}; found {sorted(columns)} "
                               "(docs/slates.md describes the format)")
    known = set(items["raw_id"].astype(str))
    parsed, seen_ids = [], {}
    for i, (row, at) in enumerate(zip(rows, where)):
        at = f"{path}: {at}"
        for c in ("user_id", "history", "candidates"):  # labels: _labels says how many are expected
            if c not in row:
                raise SlateFormatError(f"{at}: {c}: missing")
        slate = _parse_row(row, at, known, items_path)
        if not _missing(row.get("request_id")):
            _check_scalar(row["request_id"], "request_id", at)
        rid = str(i) if _missing(row.get("request_id")) else str(row["request_id"])
        if rid in seen_ids:
            raise SlateFormatError(f"{at}: request_id {rid!r} already used at {seen_ids[rid]}; expected unique ids")
        seen_ids[rid] = at
        parsed.append({"request_id": rid, **slate, "where": at})

    counts: dict[str, int] = {"rows": len(parsed), **{reason: 0 for reason in DROP_REASONS}}
    kept = []
    for slate in parsed:
        reason = _drop_reason(slate)
        if reason is None:
            kept.append(slate)
        else:
            counts[reason] += 1
    lengths = Counter(len(s["candidates"]) for s in kept)
    # The most common slate length (the longer one on a tie): every stage stacks lists into (n, K).
    k = max(lengths, key=lambda n: (lengths[n], n)) if lengths else 0
    counts["other_length"] = sum(n for length, n in lengths.items() if length != k)
    kept = [s for s in kept if len(s["candidates"]) == k]
    counts["kept"], counts["k"] = len(kept), k
    for reason, text in DROP_REASONS.items():
        if counts[reason]:
            log.warning("slates: dropped %d of %d rows of %s: %s", counts[reason], len(parsed), path, text)
    if not kept:
        raise SlateFormatError(f"{path}: no usable slate among {len(parsed)} rows (dropped: "
                               f"{ {r: counts[r] for r in DROP_REASONS if counts[r]} })")
    return pd.DataFrame(kept), counts
