"""The catalogue as the prompts show it: ``item_id → ItemText`` (SID, title, category path)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from gr2.prompts.render import ItemText

__all__ = ["item_texts", "load_item_texts"]


def item_texts(items: pd.DataFrame, sids: pd.DataFrame) -> dict[int, ItemText]:
    """``item_id → ItemText`` from ``data/items.parquet`` and ``sid/sids.parquet`` frames; every item
    must have a SID (a missing one means the SID table belongs to another catalogue)."""
    sid_of = dict(zip(sids["item_id"].astype(int), sids["sid"].astype(str)))
    missing = set(items["item_id"].astype(int)) - set(sid_of)
    if missing:
        raise ValueError(f"sid/sids.parquet has no SID for {len(missing)} items (e.g. {sorted(missing)[:5]})")
    cats = items["categories"] if "categories" in items else [()] * len(items)
    return {int(i): ItemText(int(i), sid_of[int(i)], title=t, categories=() if c is None else list(c))
            for i, t, c in zip(items["item_id"], items["title"], cats)}


def load_item_texts(run: Any) -> dict[int, ItemText]:
    """:func:`item_texts` of a run directory's ``data/items.parquet`` and ``sid/sids.parquet``."""
    return item_texts(pd.read_parquet(run.file("data", "items.parquet")),
                      pd.read_parquet(run.file("sid", "sids.parquet")))
