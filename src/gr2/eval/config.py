"""Configuration of the evaluation stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gr2.checks import at_least, check, each_at_least


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
    lambdamart: bool = True
    """Add the LambdaMART re-ranker row (LightGBM over cheap features, fitted on validation lists:
    the non-LLM bar of docs/method.md §2). Only on the test split, where its training lists are honest."""
    lambdamart_params: dict[str, Any] = field(default_factory=dict)
    """Fields of :class:`gr2.rerank.LambdaMARTConfig` (e.g. ``learning_rate``, ``cv_folds``)."""
    llm_models: list[str] = field(default_factory=lambda: ["sft", "rl"])
    """LLM re-rankers to add as rows: ``midtrain``/``sft``/``rl`` (this run's stage model; skipped
    when that stage has not run), registry names or model folders. Prompts use the run's
    ``traces.prompt`` config, the format the student was trained on."""
    llm_modes: list[str] = field(default_factory=lambda: ["direct", "reasoning"])
    """How each LLM re-ranks, one row per model and mode: ``reasoning`` — the model writes its answer
    (greedy; parsed, repaired when invalid); ``direct`` — nothing is generated, every candidate is
    scored by the log-probability of its SID as the first recommendation (the reasoning-free serving
    mode, :func:`gr2.llm.rerank.rerank_lists_direct`; always a valid ranking; ~1 s per list for the 135M model on 2 CPU
    cores against ~24 s to write a 400-token answer, BENCHMARKS.md)."""
    llm_controls: bool = True
    """Add a presentation control per LLM row: the same model with the candidates shown in the other
    order (pre-rank order when the trained prompt shuffles them, shuffled otherwise). A model whose
    gain is "trust slot 1" loses it when the order is shuffled; one that reads the items does not."""
    llm_lists: int | None = 300
    """Re-rank a seeded sample of this many lists with each LLM (``None``: all; generation costs
    about 1 s per list for the 135M model on 2 CPU cores). The table then also shows the pre-rank
    order on the same lists."""
    fusion_val_lists: int = 300
    """The fusion row "LambdaMART + <model> score" (:mod:`gr2.eval.fusion`): LambdaMART with the
    LambdaMART row's hyper-parameters, over its features plus an LLM's direct score of each candidate,
    its rank in the list and its gap to the list's best score. The LLM direct-scores a seeded sample of
    this many validation lists (~1 s per list for the 135M model on 2 CPU cores); the model is fitted
    on every val list, the unscored ones carrying the LLM features as missing; it is evaluated on the LLM rows'
    test lists (``llm_lists``, their scores reused from the model's direct row), next to the plain
    LambdaMART on the same lists. 0: no fusion row. Needs ``lambdamart``, the test split and
    ``direct`` in ``llm_modes``."""
    fusion_model: str | None = None
    """Which of ``llm_models`` scores the fusion row's candidates; ``None``: the last of them this run
    has (the default ``[sft, rl]``: ``rl``, else ``sft``; the models of variants, ``variants/...``,
    only when the run has none of its own). One fusion row per table."""
    llm_max_new_tokens: int = 384
    """Greedy-decoding budget per answer."""
    llm_batch_size: int = 8
    """Lists generated together."""

    def __post_init__(self) -> None:
        check("eval", {
            f"recall_ks must be >= 1 each (and not empty), got {self.recall_ks}": each_at_least(self.recall_ks, 1),
            f"ndcg_ks must be >= 1 each (and not empty), got {self.ndcg_ks}": each_at_least(self.ndcg_ks, 1),
            f"random_seeds must be >= 1, got {self.random_seeds}": at_least(self.random_seeds, 1),
            f"bootstrap must be >= 0, got {self.bootstrap}": at_least(self.bootstrap, 0),
            f"llm_lists must be >= 1 or None, got {self.llm_lists}": at_least(self.llm_lists, 1, none_ok=True),
            f"fusion_val_lists must be >= 0, got {self.fusion_val_lists}": at_least(self.fusion_val_lists, 0),
            f"llm_max_new_tokens must be >= 1, got {self.llm_max_new_tokens}": at_least(self.llm_max_new_tokens, 1),
            f"llm_batch_size must be >= 1, got {self.llm_batch_size}": at_least(self.llm_batch_size, 1),
        })
