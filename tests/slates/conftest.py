"""Fixtures: a tiny items file and slates file in the test's tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from slate_files import slate_rows, write_items, write_jsonl


@pytest.fixture
def items_csv(tmp_path: Path) -> Path:
    return write_items(tmp_path / "data")


@pytest.fixture
def slates_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data" / "slates.jsonl", slate_rows())
