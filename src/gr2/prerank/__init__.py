"""Pre-rankers: produce the K-item candidate lists the LLM re-ranker permutes.

Use :func:`make_preranker` to build one by name, ``fit`` it on training sequences, then
:func:`top_k` (seen items excluded by default) for candidate lists or :func:`full_catalogue_metrics`
to measure it as a retriever.

A library: it imports no pipeline stage. The ``candidates`` stage that fits them and writes a run's
lists is :mod:`gr2.candidates`.

Importing this package is light (no torch): classes are loaded on first use, so ``gr2 --help``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from gr2._lazy import lazy_exports

PRERANKERS: dict[str, str] = {
    "sasrec": "sasrec:SASRecPreranker",
    "popularity": "popularity:PopularityPreranker",
    "cooc": "cooc:CooccurrencePreranker",
    "llm": "llm_beam:LLMBeamPreranker",
}
"""Pre-ranker name → ``module:class`` inside this package."""

_EXPORTS = {
    "Preranker": "base", "top_k": "base", "full_catalogue_metrics": "base", "mask_seen_": "base",
    "PopularityPreranker": "popularity", "CooccurrencePreranker": "cooc", "LLMBeamPreranker": "llm_beam",
    "SASRecConfig": "sasrec", "SASRecModel": "sasrec", "SASRecPreranker": "sasrec",
}

__all__ = sorted([*_EXPORTS, "PRERANKERS", "make_preranker"])


def make_preranker(name: str, **kwargs: Any):
    """Build a pre-ranker by name (``sasrec``, ``popularity``, ``cooc``, ``llm``).

    Keyword arguments go to the class: for ``sasrec`` either ``config=SASRecConfig(...)`` or individual
    :class:`SASRecConfig` fields (``hidden=128, dropout=0.3``); for ``cooc`` ``m``, ``decay``,
    ``pop_weight``; ``popularity`` takes none; ``llm`` takes ``model_path`` and ``sids`` (see
    :class:`LLMBeamPreranker`).
    """
    key = name.lower()
    if key not in PRERANKERS:
        raise KeyError(f"unknown pre-ranker {name!r}; choose from {sorted(PRERANKERS)}")
    module, _, cls = PRERANKERS[key].partition(":")
    return getattr(importlib.import_module(f"gr2.prerank.{module}"), cls)(**kwargs)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
