"""The run's candidate lists (``candidates/<split>.parquet``, written by the ``candidates`` stage), as
every later stage reads them: whole, or a seeded sample that every LLM row of a table shares; and
:func:`seeded_sample`, the seeded subset of at most ``n`` items (examples, users, traces) the stages take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

from gr2.runs import RunDir

T = TypeVar("T")


def sample_indices(count: int, n: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded sample of ``n`` of ``count`` items, ascending; every position when ``n``
    is ``None`` or not smaller than ``count``. The draw is NumPy's
    ``default_rng(seed).choice(count, size=n, replace=False)``: the same seed gives the same sample
    in every run (the stages' pinned numbers rest on it)."""
    if n is None or n >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=int(n), replace=False))


def seeded_sample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """A seeded sample of ``n`` of ``items`` in their own order (all of them when ``n`` is ``None`` or
    not smaller than their number): :func:`sample_indices` over the sequence."""
    return [items[i] for i in sample_indices(len(items), n, seed)]


def load_lists(run: RunDir, split: str) -> pd.DataFrame:
    """Every list of ``candidates/<split>.parquet`` (columns ``example_id``, ``history``,
    ``candidates``, ``labels``, …; docs/artifacts.md)."""
    return pd.read_parquet(run.file("candidates", f"{split}.parquet"))


def sample_lists(run: RunDir, split: str, n_lists: int | None, seed: int) -> pd.DataFrame:
    """The run's ``candidates/<split>.parquet`` lists, or a seeded sample of ``n_lists`` of them (in
    file order); every LLM row of a table is scored on the same sample."""
    lists = load_lists(run, split)
    if lists.empty:
        raise ValueError(f"{run.path}/candidates/{split}.parquet has no lists to re-rank")
    if n_lists is not None and n_lists < len(lists):
        lists = lists.sample(n=n_lists, random_state=seed).sort_index()
    return lists
