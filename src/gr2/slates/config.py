"""Configuration of the slates input and of the MovieLens example builder (no heavy imports: read by
:mod:`gr2.config` and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from gr2.checks import check


@dataclass
class SlatesConfig:
    """Logged slates instead of a dataset and a pre-ranker (docs/slates.md).

    Off while ``path`` is ``None``. When set, the ``data`` stage writes ``data/`` from the slates'
    histories and the ``candidates`` stage writes the slates themselves as the candidate lists, in
    the production order; ``data.*`` and ``candidates.*`` are then unused.
    """

    path: str | None = None
    """The slates file: ``.parquet``, ``.jsonl`` or ``.csv``, one row per request
    (:mod:`gr2.slates.format`)."""
    items: str | None = None
    """The items file (``.csv`` or ``.parquet`` in the generic data format: ``item_id``, ``title``,
    optional ``categories``, ``description``). Required with ``path``."""
    val_fraction: float = 0.1
    """Share of users whose slates are validation lists (when the file has no ``split`` column)."""
    test_fraction: float = 0.1
    """Share of users whose slates are test lists (when the file has no ``split`` column)."""
    seed: int = 0
    """Seed of the user split."""
    max_history: int = 50
    """Longest history written to the candidate lists (the most recent items are kept)."""

    def __post_init__(self) -> None:
        checks = {
            "items is required with path": self.path is None or bool(self.items),
            "val_fraction and test_fraction must be in (0, 1) and sum below 1":
                0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1,
            "max_history must be >= 1": self.max_history >= 1,
        }
        check("slates", checks)


@dataclass
class MovieLensSlates:
    """How the MovieLens example slates are built (:mod:`gr2.slates.movielens`)."""

    k: int = 10
    """Candidates per slate."""
    window: int = 20
    """Ratings after the cut time that count as the user's reaction to the slate."""
    cut_quantile: float = 0.9
    """The cut time ``T`` is this quantile of all rating times."""
    min_history: int = 5
    """Users with fewer ratings before ``T`` get no slate."""
    prerank: str = "popularity"
    """``popularity`` or ``cooc`` (``gr2.prerank``), fitted on the ratings before ``T``."""

    def __post_init__(self) -> None:
        if self.k < 2 or self.window < 1 or self.min_history < 1 or not 0 < self.cut_quantile < 1:
            raise ValueError(f"need k >= 2, window >= 1, min_history >= 1, 0 < cut_quantile < 1: {self}")
        if self.prerank not in ("popularity", "cooc"):
            raise ValueError(f"prerank must be 'popularity' or 'cooc', got {self.prerank!r}")
