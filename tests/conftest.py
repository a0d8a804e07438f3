"""Shared fixtures: tiny data sets written in the generic format inside the test's tmp dir."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest


def write_generic(folder: Path, n_users: int = 40, n_items: int = 30, seq_len: int = 7) -> Path:
    """A deterministic generic-format dataset: user u reads items u, u+1, ... (mod n_items)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(n_users):
        for t in range(seq_len):
            rows.append({"user_id": f"u{u}", "item_id": f"i{(u + t) % n_items}", "timestamp": 1000 * u + t})
    pd.DataFrame(rows).to_csv(folder / "interactions.csv", index=False)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"Item number {i}" for i in range(n_items)],
            "categories": [f"Beauty > Group {i % 3} > Kind {i % 5}" for i in range(n_items)],
        }
    )
    items.to_csv(folder / "items.csv", index=False)
    return folder


@pytest.fixture
def generic_dir(tmp_path: Path) -> Path:
    return write_generic(tmp_path / "mydata")


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Torch on ``n`` threads inside (tiny matrices: extra threads only contend on a shared machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    with torch_threads(1):
        yield
