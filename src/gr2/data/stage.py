"""The data stage: load a dataset, filter it, and write ``data/`` of the run directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from gr2.data.config import DataConfig
from gr2.data.loaders import _find, generic_folder, load_dataset, parquet_parts
from gr2.data.prepare import prepare
from gr2.data.splits import Split, sequences_from_interactions
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet

log = logging.getLogger(__name__)


#: Interaction files above this size (on disk) get a hint to use ``data.engine: duckdb``.
LARGE_BYTES = 2 * 1024**3


def run_data(run: RunDir, cfg: DataConfig) -> dict:
    out = run.stage_dir("data")
    if cfg.engine == "duckdb":  # out of core, the same files (gr2.data.outofcore)
        from gr2.data.outofcore import run_out_of_core

        s = run_out_of_core(cfg, out)
    else:
        folder = generic_folder(cfg.dataset)
        if folder is not None:
            _hint_large(_find(folder, "interactions"))
        prepared = prepare(load_dataset(cfg.dataset), cfg)
        atomic_write_parquet(out / "items.parquet", prepared.items)
        atomic_write_parquet(out / "interactions.parquet", prepared.interactions)
        s = prepared.stats
    atomic_write_json(out / "stats.json", s)
    log.info("data: %d users, %d items, %d interactions (mean %.2f per user)",
             s["users"], s["items"], s["interactions"], s["avg_history_len"])
    return {k: s[k] for k in ("users", "items", "interactions", "avg_history_len")}


def _hint_large(inter_path: Path) -> None:
    """Warn when the interactions file (or folder of parts) that the loader will read is large."""
    size = sum(p.stat().st_size for p in parquet_parts(inter_path))
    if size > LARGE_BYTES:
        log.warning("data: %s holds %.1f GB of interactions, read into memory by data.engine=pandas; for logs "
                    "larger than memory use data.engine=duckdb (README, 'Your own data')", inter_path,
                    size / 1024**3)


def load_items(run: RunDir) -> pd.DataFrame:
    return pd.read_parquet(run.file("data", "items.parquet"))


def load_split(run: RunDir) -> Split:
    return sequences_from_interactions(pd.read_parquet(run.file("data", "interactions.parquet"),
                                                       columns=["user_id", "item_id", "position"]))
