"""Tiny slates and items files for the slates tests (tests/slates) and their fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

N_ITEMS = 30


def write_items(folder: Path, n_items: int = N_ITEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)],
        "title": [f"Item number {i}" for i in range(n_items)],
        "categories": [f"Beauty > Group {i % 3} > Kind {i % 5}" for i in range(n_items)],
    }).to_csv(folder / "items.csv", index=False)
    return folder / "items.csv"


def slate_rows(n_users: int = 40, k: int = 5, requests: int = 1) -> list[dict]:
    """User u read items u..u+5 (mod N_ITEMS); each request shows the next k unseen items with one
    or two positives (grades 2 and 1) at positions that move with the user."""
    rows = []
    for u in range(n_users):
        for r in range(requests):
            history = [f"i{(u + t) % N_ITEMS}" for t in range(6 + r)]
            candidates = [f"i{(u + 6 + r + j) % N_ITEMS}" for j in range(k)]
            labels = [0] * k
            labels[(u + r) % k] = 2
            if u % 2:
                labels[(u + r + 2) % k] = 1
            rows.append({"request_id": f"r{u}-{r}", "user_id": f"u{u}", "history": history,
                         "history_timestamps": [1000.0 * u + 10 * r + t for t in range(len(history))],
                         "timestamp": 1000.0 * u + 10 * r + 9, "candidates": candidates, "labels": labels,
                         "scores": [float(k - j) for j in range(k)]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
