"""The items a server knows, by the catalogue's ``raw_id``, and SIDs for items it does not know.

Clients speak in their own item ids (``raw_id`` in ``data/items.parquet``), never in gr2's dense
``item_id``. An item the catalogue lacks can be sent inline with its text (:class:`Item`); it gets an
SID on the fly from the run's trained SID tokenizer (``sid/tokenizer.pt``, the cold-start path of
:func:`gr2.sid.tokenizer.assign_new_items`): its text is rendered with the run's own SID template,
embedded with the run's embedding model and quantised, and collisions are resolved against every
SID already in use — the catalogue's and those given to earlier new items — so no existing SID ever
changes and none is reused. A new item keeps its SID for the life of the process (the same id sent
again is not re-embedded; its text is then ignored).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.prompts.render import ItemText
from gr2.prompts.sids import render_sid

__all__ = ["Catalogue", "ColdStartUnavailable", "Item"]


@dataclass(frozen=True)
class Item:
    """An item given inline in a request: its id and the text its SID is computed from."""

    id: str
    title: str = ""
    categories: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(str(c) for c in (self.categories or ())))


class ColdStartUnavailable(RuntimeError):
    """New items were sent but this catalogue has no SID tokenizer to give them SIDs."""


class Catalogue:
    """``raw_id`` → :class:`ItemText` (dense id, SID, title, categories), plus cold-start SIDs.

    ``embed_fn`` (texts → vectors) replaces the run's embedding model, e.g. in tests.
    """

    def __init__(self, items: pd.DataFrame, sids: pd.DataFrame, sid_tokenizer: str | Path | None = None,
                 embed_fn: Any = None, max_new_items: int = 100_000) -> None:
        sids = sids.set_index("item_id")
        missing = sorted(set(items["item_id"]) - set(sids.index))
        if missing:
            raise ValueError(f"{len(missing)} items have no SID (e.g. item_id {missing[:5]})")
        self._items: dict[str, ItemText] = {}
        self._codes: list[tuple[int, ...]] = []
        for row in items.itertuples(index=False):
            iid = int(row.item_id)
            codes = tuple(int(c) for c in sids.at[iid, "codes"])
            sid = sids.at[iid, "sid"] if "sid" in sids.columns else render_sid(codes)
            title = row.title if isinstance(row.title, str) else ""
            cats = () if row.categories is None or isinstance(row.categories, float) else tuple(row.categories)
            self._items[str(row.raw_id)] = ItemText(iid, str(sid), title, cats)
            self._codes.append(codes)
        self.n_catalogue = len(self._items)
        self.sid_tokenizer = Path(sid_tokenizer) if sid_tokenizer is not None else None
        self.embed_fn = embed_fn
        self.max_new_items = int(max_new_items)
        self.n_new = 0
        self._tok: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, items: str | Path, sids: str | Path, sid_tokenizer: str | Path | None = None,
                   embed_fn: Any = None, max_new_items: int = 100_000) -> Catalogue:
        """From ``data/items.parquet`` and ``sid/sids.parquet`` (and ``sid/tokenizer.pt`` for cold start)."""
        cols = ["item_id", "raw_id", "title", "categories"]
        return cls(pd.read_parquet(items, columns=cols), pd.read_parquet(sids), sid_tokenizer, embed_fn,
                   max_new_items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, raw_id: object) -> bool:
        return raw_id in self._items

    def get(self, raw_id: str) -> ItemText | None:
        return self._items.get(raw_id)

    @property
    def can_add(self) -> bool:
        return self.sid_tokenizer is not None and self.sid_tokenizer.is_file()

    def add(self, new: Sequence[Item]) -> list[ItemText]:
        """SIDs for ``new`` items (ids the catalogue lacks); ids already added keep their SID."""
        with self._lock:
            todo: dict[str, Item] = {}
            for it in new:
                if it.id not in self._items and it.id not in todo:
                    todo[it.id] = it
            if todo:
                self._assign(list(todo.values()))
            return [self._items[it.id] for it in new]

    def _assign(self, new: list[Item]) -> None:
        if not self.can_add:
            raise ColdStartUnavailable("this server has no SID tokenizer (sid/tokenizer.pt), so it cannot "
                                       "assign SIDs to items outside its catalogue")
        if self.n_new + len(new) > self.max_new_items:
            raise ColdStartUnavailable(f"the server has already assigned SIDs to {self.n_new} new items "
                                       f"(limit {self.max_new_items})")
        from gr2.sid.embed import model_embed_fn, render_texts
        from gr2.sid.tokenizer import assign, load_tokenizer

        if self._tok is None:
            self._tok = load_tokenizer(self.sid_tokenizer)
        tok, cfg = self._tok
        frame = pd.DataFrame({"item_id": range(len(new)), "raw_id": [it.id for it in new],
                              "title": [it.title for it in new], "categories": [list(it.categories) for it in new],
                              "description": [it.description for it in new]})
        texts, _ = render_texts(frame, cfg.text_template, cfg.category_separator, cfg.max_description_chars)
        if self.embed_fn is None:
            self.embed_fn = model_embed_fn(cfg.embedding_model, "cpu", normalize=cfg.normalize_embeddings)
        x = np.asarray(self.embed_fn(texts), dtype=np.float32)
        if cfg.normalize_embeddings:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sids = assign(tok, x, cfg, existing=self._codes).sids
        for it, codes in zip(new, sids):
            iid = self.n_catalogue + self.n_new
            self._items[it.id] = ItemText(iid, render_sid(codes), it.title, it.categories)
            self._codes.append(tuple(int(c) for c in codes))
            self.n_new += 1
