"""Tokenizer-independent steps: validation, training dispatch, SID assignment, checkpoints.

A tokenizer (``RQVAETokenizer`` or ``RQKMeansTokenizer``) offers ``encode(x) -> (N, learned)``
codes, ``last_level_distances(x) -> (N, C)``, ``reconstruction_error(x)``, ``state()`` /
``from_state()``. :func:`assign` turns its codes into unique SIDs: random last level(s), then
collision resolution, optionally against the SIDs of a previous run (cold start).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr2.sid.config import SidConfig
from gr2.sid.embed import check_embeddings
from gr2.sid.uniqueness import (
    Occupancy,
    ResolveInfo,
    draw_random_levels,
    resolve_collisions,
)

FORMAT = "gr2-sid-tokenizer/1"


def min_codebook_size(n_items: int, levels: int) -> int:
    """Smallest C with C ** levels ≥ n_items."""
    c = max(2, math.ceil(n_items ** (1.0 / levels)))
    while c ** levels < n_items:
        c += 1
    while c > 2 and (c - 1) ** levels >= n_items:
        c -= 1
    return c


def validate(cfg: SidConfig, n_items: int) -> None:
    """Clear errors for configurations that cannot give every item a unique SID."""
    if cfg.levels < 1:
        raise ValueError(f"sid.levels must be ≥ 1, got {cfg.levels}")
    if cfg.codebook_size < 2:
        raise ValueError(f"sid.codebook_size must be ≥ 2, got {cfg.codebook_size}")
    if not 0 <= cfg.random_last_levels < cfg.levels:
        raise ValueError(f"sid.random_last_levels must be in 0..levels-1 = 0..{cfg.levels - 1}, "
                         f"got {cfg.random_last_levels}")
    if cfg.codebook_size ** cfg.levels < n_items:
        need = min_codebook_size(n_items, cfg.levels)
        raise ValueError(
            f"sid.codebook_size={cfg.codebook_size} is too small for {n_items} items with "
            f"levels={cfg.levels}: {cfg.codebook_size}^{cfg.levels} = {cfg.codebook_size ** cfg.levels} "
            f"SIDs < {n_items}. Use codebook_size ≥ {need} (or more levels)."
        )


def train_tokenizer(x: np.ndarray, cfg: SidConfig, pairs: np.ndarray | None = None):
    """Train the tokenizer ``cfg.method`` on embeddings ``x``."""
    check_embeddings(x)
    validate(cfg, len(x))
    if cfg.method == "rqvae":
        from gr2.sid.rqvae import train_rqvae

        return train_rqvae(x, cfg, pairs)
    if cfg.method == "rqkmeans":
        from gr2.sid.rqkmeans import train_rqkmeans

        return train_rqkmeans(x, cfg)
    raise ValueError(f"unknown sid.method {cfg.method!r}; expected 'rqvae' or 'rqkmeans'")


@dataclass
class Assignment:
    """SIDs of a batch of items."""

    raw: np.ndarray
    """``(N, L)`` codes before collision resolution (learned + random levels)."""
    sids: list[tuple[int, ...]]
    """Final unique SIDs (length L, or more where a level was added)."""
    info: ResolveInfo
    """What the resolution did."""


def assign(tok, x: np.ndarray, cfg: SidConfig, existing: list[tuple[int, ...]] | None = None,
           seed: Any = None) -> Assignment:
    """Unique SIDs for embeddings ``x`` with a trained tokenizer, never reusing ``existing`` ones.

    Random level(s) use ``seed`` (default ``cfg.seed``, or ``[cfg.seed, len(existing)]`` for cold
    start, so that a second batch of new items draws differently from the first).
    """
    check_embeddings(x)
    C, L, M = cfg.codebook_size, cfg.levels, cfg.random_last_levels
    existing = [tuple(int(c) for c in s) for s in existing] if existing else []
    learned = tok.encode(x)
    occ = Occupancy.build(existing, L - max(M, 1))  # prefixes where codes are drawn or resolved
    if M:
        if seed is None:
            seed = [cfg.seed, 7919, len(existing)] if existing else cfg.seed
        raw = np.concatenate([learned, draw_random_levels(learned, M, C, seed, occupancy=occ)], axis=1)
        cost_fn = None  # a random code carries no preference
    else:
        raw = learned

        def cost_fn(idx: np.ndarray) -> np.ndarray:
            return tok.last_level_distances(x[idx])

    sids, info = resolve_collisions(raw, C, cost_fn=cost_fn, existing=existing, occupancy=occ)
    return Assignment(raw, sids, info)


# -- checkpoints ------------------------------------------------------------------------------
def save_tokenizer(tok, cfg: SidConfig, path: str | Path) -> None:
    """``torch.save`` of ``{format, method, config, state}`` (written atomically)."""
    import torch

    from gr2.runs import atomic_path

    payload = {"format": FORMAT, "method": tok.method, "config": dataclasses.asdict(cfg), "state": tok.state()}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def load_tokenizer(path: str | Path, device: str = "cpu"):
    """(tokenizer, SidConfig) from a checkpoint written by :func:`save_tokenizer`."""
    import torch

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a gr2 SID tokenizer checkpoint (format {payload.get('format')!r})")
    cfg = SidConfig(**payload["config"])
    if payload["method"] == "rqvae":
        from gr2.sid.rqvae import RQVAETokenizer

        tok = RQVAETokenizer.from_state(payload["state"], device)
    else:
        from gr2.sid.rqkmeans import RQKMeansTokenizer

        tok = RQKMeansTokenizer.from_state(payload["state"])
    return tok, cfg


def _locate(source: str | Path) -> tuple[Path, Path | None]:
    p = Path(source)
    if p.is_dir():
        for ckpt in (p / "sid" / "tokenizer.pt", p / "tokenizer.pt"):
            if ckpt.exists():
                table = ckpt.parent / "sids.parquet"
                return ckpt, table if table.exists() else None
        raise FileNotFoundError(f"no sid/tokenizer.pt under {p}: run the 'sid' stage first")
    table = p.parent / "sids.parquet"
    return p, table if table.exists() else None


def assign_new_items(source: str | Path, embeddings: np.ndarray,
                     existing: list[tuple[int, ...]] | None = None, device: str = "cpu") -> list[tuple[int, ...]]:
    """Cold start: SIDs for items not seen in training, from a run directory or checkpoint.

    ``source`` is a run directory, its ``sid/`` folder or a ``tokenizer.pt``. The SIDs of the
    trained items are read from the ``sids.parquet`` beside the checkpoint (or given as
    ``existing``); they are never changed and never reused. To keep adding items, pass
    ``existing + previous_new`` on the next call.
    """
    ckpt, table = _locate(source)
    tok, cfg = load_tokenizer(ckpt, device)
    if existing is None:
        existing = []
        if table is not None:
            import pandas as pd

            existing = [tuple(int(c) for c in s) for s in pd.read_parquet(table, columns=["codes"])["codes"]]
    x = np.asarray(embeddings, dtype=np.float32)
    return assign(tok, x, cfg, existing=existing).sids
