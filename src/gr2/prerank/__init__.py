"""Pre-rankers: produce the K-item candidate lists the LLM re-ranker permutes.

Use :func:`make_preranker` to build one by name, ``fit`` it on training sequences, then
:func:`top_k` (seen items excluded by default) for candidate lists or :func:`full_catalogue_metrics`
to measure it as a retriever.
"""

from __future__ import annotations

from .base import Preranker, full_catalogue_metrics, mask_seen_, top_k
from .cooc import CooccurrencePreranker
from .llm_beam import LLMBeamPreranker
from .popularity import PopularityPreranker
from .sasrec import SASRecConfig, SASRecModel, SASRecPreranker

__all__ = [
    "Preranker",
    "top_k",
    "full_catalogue_metrics",
    "mask_seen_",
    "PopularityPreranker",
    "CooccurrencePreranker",
    "LLMBeamPreranker",
    "SASRecConfig",
    "SASRecModel",
    "SASRecPreranker",
    "PRERANKERS",
    "make_preranker",
]

PRERANKERS: dict[str, type[Preranker]] = {
    "sasrec": SASRecPreranker,
    "popularity": PopularityPreranker,
    "cooc": CooccurrencePreranker,
    "llm": LLMBeamPreranker,
}


def make_preranker(name: str, **kwargs) -> Preranker:
    """Build a pre-ranker by name (``sasrec``, ``popularity``, ``cooc``, ``llm``).

    Keyword arguments go to the class: for ``sasrec`` either ``config=SASRecConfig(...)`` or individual
    :class:`SASRecConfig` fields (``hidden=128, dropout=0.3``); for ``cooc`` ``m``, ``decay``,
    ``pop_weight``; ``popularity`` takes none; ``llm`` takes ``model_path`` and ``sids`` (see
    :class:`LLMBeamPreranker`).
    """
    key = name.lower()
    if key not in PRERANKERS:
        raise KeyError(f"unknown pre-ranker {name!r}; choose from {sorted(PRERANKERS)}")
    return PRERANKERS[key](**kwargs)
