"""The data stage: load a dataset, filter it, and write ``data/`` of the run directory."""

from __future__ import annotations

import logging

import pandas as pd

from gr2.data.config import DataConfig
from gr2.data.loaders import load_dataset
from gr2.data.prepare import prepare
from gr2.data.splits import Split, sequences_from_interactions
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet

log = logging.getLogger(__name__)


def run_data(run: RunDir, cfg: DataConfig) -> dict:
    raw = load_dataset(cfg.dataset)
    prepared = prepare(raw, cfg)
    out = run.stage_dir("data")
    atomic_write_parquet(out / "items.parquet", prepared.items)
    atomic_write_parquet(out / "interactions.parquet", prepared.interactions)
    atomic_write_json(out / "stats.json", prepared.stats)
    s = prepared.stats
    log.info("data: %d users, %d items, %d interactions (mean %.2f per user)",
             s["users"], s["items"], s["interactions"], s["avg_history_len"])
    return {k: s[k] for k in ("users", "items", "interactions", "avg_history_len")}


def load_items(run: RunDir) -> pd.DataFrame:
    return pd.read_parquet(run.file("data", "items.parquet"))


def load_split(run: RunDir) -> Split:
    return sequences_from_interactions(pd.read_parquet(run.file("data", "interactions.parquet")))
