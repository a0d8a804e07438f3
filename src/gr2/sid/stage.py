"""The ``sid`` stage: item text → embeddings → tokenizer → unique SIDs.

Reads ``data/items.parquet`` (and ``data/interactions.parquet`` when the contrastive loss is on);
writes ``sid/sids.parquet`` (item_id, codes, sid), ``sid/tokenizer.pt``, ``sid/report.json`` and the
embedding cache ``sid/cache/emb-*.npy``. The ablation grid is in :mod:`gr2.sid.ablation`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.prompts.sids import render_sid
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet
from gr2.sid.config import SidConfig
from gr2.sid.embed import EmbedFn, embed_texts, model_embed_fn, model_id, render_texts
from gr2.sid.report import extra_level_count, level_stats, uniqueness_stats
from gr2.sid.tokenizer import (
    Assignment,
    assign,
    save_tokenizer,
    train_tokenizer,
    validate,
)

log = logging.getLogger(__name__)


# -- inputs -----------------------------------------------------------------------------------
def train_pairs(interactions: pd.DataFrame) -> np.ndarray:
    """Co-interaction pairs of the TRAIN split only: ``(P, 2)`` item ids.

    Per user (sorted by ``position``) the last item is the test target and the second-to-last
    the validation target (leave-one-out); both are dropped, and each remaining consecutive pair
    ``(v_t, v_{t+1})`` with distinct items is a positive.
    """
    df = interactions[["user_id", "item_id", "position"]].sort_values(["user_id", "position"], kind="stable")
    users = df["user_id"].to_numpy()
    items = df["item_id"].to_numpy().astype(np.int64)
    n = len(df)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # index from the end of each user's sequence: 0 = test, 1 = validation
    last = np.r_[users[1:] != users[:-1], True]
    ends = np.flatnonzero(last)
    user_end = np.repeat(ends, np.diff(np.r_[-1, ends]))
    from_end = user_end - np.arange(n)
    train = from_end >= 2
    a, b = np.arange(n - 1), np.arange(1, n)
    ok = train[a] & train[b] & (users[a] == users[b]) & (items[a] != items[b])
    return np.stack([items[a[ok]], items[b[ok]]], axis=1)


def read_items(run: RunDir) -> pd.DataFrame:
    items = pd.read_parquet(run.file("data", "items.parquet"))
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    ids = items["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(items))):
        raise ValueError("data/items.parquet: item_id must be dense 0..N-1 (docs/artifacts.md)")
    return items


def item_embeddings(run: RunDir, cfg: SidConfig, items: pd.DataFrame | None = None,
                    embed_fn: EmbedFn | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of the run's items (cached); ``embed_fn`` replaces the model (tests)."""
    items = read_items(run) if items is None else items
    t0 = time.perf_counter()
    texts, n_empty = render_texts(items, cfg.text_template, cfg.category_separator, cfg.max_description_chars)
    if embed_fn is None:
        fn = model_embed_fn(cfg.embedding_model, _embed_device(cfg.device), cfg.embed_batch_size,
                            cfg.normalize_embeddings, progress=cfg.progress)
        ident = model_id(cfg.embedding_model)
    else:
        fn, ident = embed_fn, getattr(embed_fn, "model_id", f"custom:{getattr(embed_fn, '__name__', 'fn')}")
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else run.stage_dir("sid") / "cache"
    with cpu_threads(cfg.num_threads):
        emb, meta = embed_texts(texts, fn, ident, cache, cfg.normalize_embeddings)
    meta.update(model=ident, dim=int(emb.shape[1]), empty_text_items=n_empty,
                seconds=round(time.perf_counter() - t0, 2), example_text=texts[0] if texts else "")
    return emb, meta


def cpu_threads(n: int | None):
    """Context: ``n`` threads for torch and the BLAS/OpenMP pools (``None``: defaults)."""
    from gr2.sid.rqvae import torch_threads

    return torch_threads(n)


def _embed_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# -- the tokenizer on a matrix ------------------------------------------------------------------
@dataclass
class SidBuild:
    """Everything :func:`build_sids` produced."""

    tokenizer: Any
    assignment: Assignment
    report: dict[str, Any] = field(default_factory=dict)


def build_sids(x: np.ndarray, cfg: SidConfig, pairs: np.ndarray | None = None) -> SidBuild:
    """Train the tokenizer on ``x`` (N, d), assign SIDs, resolve collisions, measure everything."""
    validate(cfg, len(x))
    with cpu_threads(cfg.num_threads):
        t0 = time.perf_counter()
        tok = train_tokenizer(x, cfg, pairs)
        t1 = time.perf_counter()
        a = assign(tok, x, cfg)
        t2 = time.perf_counter()
        recon = tok.reconstruction_error(x)
    L, C = cfg.levels, cfg.codebook_size
    first_l = np.array([s[:L] for s in a.sids], dtype=np.int64)
    raw_stats = uniqueness_stats(a.raw)
    report: dict[str, Any] = {
        "method": cfg.method,
        "items": len(x),
        "levels": L,
        "codebook_size": C,
        "learned_levels": L - cfg.random_last_levels,
        "random_last_levels": cfg.random_last_levels,
        "raw": {**raw_stats, "per_level": level_stats(a.raw, C),
                "learned_levels_only": uniqueness_stats(a.raw[:, :L - cfg.random_last_levels])},
        "final": {**uniqueness_stats(a.sids), "per_level": level_stats(first_l, C),
                  "items_with_extra_levels": extra_level_count(a.sids, L)},
        "resolution": a.info.as_dict(),
        "reconstruction": recon,
        "training": _training_summary(tok, cfg),
        "seed": cfg.seed,
        "timings": {"train_s": round(t1 - t0, 2), "assign_and_resolve_s": round(t2 - t1, 2)},
    }
    return SidBuild(tok, a, report)


def _training_summary(tok, cfg: SidConfig) -> dict[str, Any]:
    hist = getattr(tok, "history", [])
    out: dict[str, Any] = {"epochs": cfg.epochs if cfg.method == "rqvae" else 0}
    if hist:
        out["last_epoch"] = hist[-1]
        out["loss_curve"] = [round(h["loss"], 5) for h in hist]
    if hasattr(tok, "dead_code_resets"):
        out["dead_code_resets"] = tok.dead_code_resets
    return out


# -- the stage ----------------------------------------------------------------------------------
def sid_table(sids: Sequence[Sequence[int]]) -> pd.DataFrame:
    """``sids.parquet`` rows: item_id (row index), codes, rendered sid."""
    return pd.DataFrame({
        "item_id": np.arange(len(sids), dtype=np.int64),
        "codes": [list(map(int, s)) for s in sids],
        "sid": [render_sid(s) for s in sids],
    })


def run_sid(run: RunDir, cfg: SidConfig, embed_fn: EmbedFn | None = None) -> dict[str, Any]:
    """Stage 1: write ``sid/sids.parquet``, ``sid/tokenizer.pt`` and ``sid/report.json``."""
    t0 = time.perf_counter()
    items = read_items(run)
    emb, emb_meta = item_embeddings(run, cfg, items, embed_fn)
    pairs = None
    if cfg.contrastive_weight > 0 and cfg.method == "rqvae":
        pairs = train_pairs(pd.read_parquet(run.file("data", "interactions.parquet")))
    build = build_sids(emb, cfg, pairs)
    out = run.stage_dir("sid")
    table = sid_table(build.assignment.sids)
    if table["sid"].duplicated().any():  # cannot happen: resolve_collisions guarantees it
        raise AssertionError("duplicate SIDs after resolution")
    atomic_write_parquet(out / "sids.parquet", table)
    save_tokenizer(build.tokenizer, cfg, out / "tokenizer.pt")
    report = build.report
    report["embedding"] = emb_meta
    report["contrastive_pairs"] = 0 if pairs is None else int(len(pairs))
    report["timings"]["embed_s"] = emb_meta["seconds"]
    report["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    report["environment"] = _environment(cfg)
    report["config"] = dataclasses.asdict(cfg)
    atomic_write_json(out / "report.json", report)
    summary = {
        "items": report["items"],
        "raw_uniqueness": round(report["raw"]["uniqueness"], 4),
        "final_uniqueness": report["final"]["uniqueness"],
        "collisions_resolved": report["raw"]["collisions"],
        "items_with_extra_level": report["resolution"]["extended"],
        "perplexity": [round(s["perplexity"], 1) for s in report["raw"]["per_level"]],
        "seconds": report["timings"]["total_s"],
    }
    log.info("sid: %s", summary)
    return summary


def _environment(cfg: SidConfig) -> dict[str, Any]:
    import torch

    return {"cpu_threads": cfg.num_threads or torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2), "device": cfg.device,
            "python": platform.python_version(), "torch": torch.__version__}
