"""Append-only JSONL store of finished teacher calls, keyed by ``(example_id, attempt)``.

Teacher calls are the expensive part of stage 2 (minutes per batch on a CPU, money on an API), so
every finished call is written at once and never repeated: each :meth:`TraceStore.append` writes
one line per record, then flushes and fsyncs. Opening a store reads the lines already there; a
crash mid-write can leave only a truncated *last* line, which is dropped with a warning (and cut
from the file, so the next append starts on a fresh line). A bad line anywhere else is real
corruption and raises. :attr:`TraceStore.done` holds the keys already answered, so a resumed run
skips them; appending a key twice raises.

Line format: see :func:`gr2.traces.sampling.make_record` (one JSON object per line, UTF-8).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["TraceStore", "Key", "record_key"]

Key = tuple[str, int]


def record_key(record: dict[str, Any]) -> Key:
    """The store key of a record: ``(example_id, attempt)``."""
    return str(record["example_id"]), int(record["attempt"])


class TraceStore:
    """The records of ``path`` (read on open) plus those appended since, in file order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self.done: set[Key] = set()
        self._load()

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        pieces = data.split(b"\n")
        offset = 0
        for i, raw in enumerate(pieces):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            is_last = all(not p.strip() for p in pieces[i + 1:])
            try:
                rec = json.loads(raw)
                key = record_key(rec)
            except (ValueError, KeyError, TypeError) as exc:
                if not is_last:
                    raise ValueError(f"{self.path}: line {i + 1} is corrupt ({exc}); only the last "
                                     "line can be cut by a crash — fix or remove the file") from None
                log.warning("%s: dropping a truncated last line (%d bytes) left by an interrupted write",
                            self.path, len(raw))
                with open(self.path, "r+b") as fh:
                    fh.truncate(start)
                return
            if key in self.done:
                log.warning("%s: line %d repeats %s; keeping the first", self.path, i + 1, key)
                continue
            self.records.append(rec)
            self.done.add(key)
        if data and not data.endswith(b"\n"):  # complete last record, newline lost
            with open(self.path, "ab") as fh:
                fh.write(b"\n")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write ``records`` (one line each), flush and fsync; refuses keys already stored."""
        batch = list(records)
        keys = [record_key(r) for r in batch]
        again = sorted({k for k, n in Counter(keys).items() if n > 1 or k in self.done})
        if again:
            raise ValueError(f"{self.path}: already stored (or repeated in the batch): {again[:5]}")
        if not batch:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in batch)
        with open(self.path, "ab") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        self.records.extend(batch)
        self.done.update(keys)

    def by_example(self) -> dict[str, list[dict[str, Any]]]:
        """Records per example id, by attempt."""
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.records:
            out.setdefault(str(r["example_id"]), []).append(r)
        for recs in out.values():
            recs.sort(key=lambda r: int(r["attempt"]))
        return out
