"""The run's candidate lists (``candidates/<split>.parquet``, written by the ``candidates`` stage), as
every later stage reads them: whole, or a seeded sample that every LLM row of a table shares."""

from __future__ import annotations

import pandas as pd

from gr2.runs import RunDir


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
