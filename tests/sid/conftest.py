"""Shared tiny fixtures for the SID tests: synthetic items, a fake embedder, a tiny run dir."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import gr2  # noqa: F401
except ImportError:  # package not installed yet: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from gr2.runs import RunDir, atomic_write_parquet  # noqa: E402
from gr2.sid.config import SidConfig  # noqa: E402

# Test modules run with --import-mode=importlib: helpers reach them as fixtures only.

CATS = [["Beauty", "Makeup", "Nails"], ["Beauty", "Skin Care", "Face"], ["Beauty", "Hair Care"],
        ["Beauty", "Fragrance"], ["Beauty", "Tools"], ["Beauty", "Bath"]]


def fake_embed(texts: list[str], dim: int = 32) -> np.ndarray:
    """Deterministic text → vector: a category direction plus a per-text hash vector."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(dim)
        cat = t.split("Category:")[-1]
        cseed = int.from_bytes(hashlib.sha256(cat.encode()).digest()[:8], "little")
        v = 0.6 * v + np.random.default_rng(cseed).standard_normal(dim)
        out[i] = v / np.linalg.norm(v)
    return out


fake_embed.model_id = "fake-embed-v1"  # type: ignore[attr-defined]


def synthetic_vectors(n: int = 300, dim: int = 32, clusters: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def tiny_config(**kw) -> SidConfig:
    base = dict(levels=3, codebook_size=16, hidden_dims=[32], latent_dim=8, epochs=3, batch_size=64,
                progress=False, num_threads=1, dead_code_threshold=5, contrastive_batch_size=32)
    base.update(kw)
    return SidConfig(**base)


def make_run(path: Path, n_items: int = 300, n_users: int = 60, empty: int = 0) -> RunDir:
    rng = np.random.default_rng(1)
    items = pd.DataFrame({
        "item_id": np.arange(n_items, dtype=np.int64),
        "raw_id": [f"P{i:05d}" for i in range(n_items)],
        "title": [f"Product {i} shade {rng.integers(100)}" for i in range(n_items)],
        "categories": [CATS[i % len(CATS)] for i in range(n_items)],
        "description": ["" for _ in range(n_items)],
    })
    for i in range(empty):
        items.at[i, "title"] = ""
        items.at[i, "categories"] = []
    rows = []
    for u in range(n_users):
        seq = rng.choice(n_items, size=int(rng.integers(5, 12)), replace=False)
        rows += [(u, int(it), p) for p, it in enumerate(seq)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).astype("int64")
    inter["timestamp"] = np.nan
    inter["raw_user_id"] = inter["user_id"].astype(str)
    atomic_write_parquet(path / "data" / "items.parquet", items)
    atomic_write_parquet(path / "data" / "interactions.parquet", inter)
    return RunDir(path)


@pytest.fixture
def tiny_run(tmp_path: Path) -> RunDir:
    return make_run(tmp_path / "run")


@pytest.fixture
def run_factory():
    return make_run


@pytest.fixture
def vectors() -> np.ndarray:
    return synthetic_vectors()


@pytest.fixture
def make_vectors():
    return synthetic_vectors


@pytest.fixture
def tiny_cfg():
    return tiny_config


@pytest.fixture(name="fake_embed")
def _fake_embed():
    return fake_embed
