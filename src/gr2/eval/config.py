"""Configuration of the evaluation stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Which lists are scored, with which metrics and how much statistical care."""

    split: str = "test"
    """Candidate split the table is computed on (``test`` or ``val``)."""
    recall_ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10])
    """Cut-offs for Recall@K (with one positive, the hit rate)."""
    ndcg_ks: list[int] = field(default_factory=lambda: [3, 5, 10])
    """Cut-offs for NDCG@K."""
    random_seeds: int = 5
    """The random-order baseline is averaged over this many shuffles."""
    bootstrap: int = 1000
    """Bootstrap resamples for confidence intervals and the paired test against the pre-rank."""
    seed: int = 0
    """Seed of the random baseline and of the bootstrap."""
