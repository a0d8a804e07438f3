"""Configuration of the ``sft`` stage (method.md §6). No heavy imports: the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass

from gr2.training_config import TrainingFields


@dataclass
class SFTConfig(TrainingFields):
    """Stage 3a: supervised fine-tuning on the accepted reasoning traces with a weighted loss."""

    init: str = "midtrain"
    """Model to start from: ``"midtrain"`` (this run's ``midtrain/model``, which knows the SID
    tokens), or a registry name / ``save_pretrained`` folder (``gr2.llm.registry.resolve``)."""
    lambda_reasoning: float = 0.5
    """λ_r: weight of the explanation tokens in ``L = −λ_r Σ log P(reasoning) − λ_o Σ log P(ranking)``
    (method.md §6; paper: λ_r < λ_o). 0 trains on the ranking only."""
    lambda_ranking: float = 1.0
    """λ_o: weight of the ``"recommendations"`` tokens (from the key to the end of the turn)."""

    # -- schedule ---------------------------------------------------------------------------
    epochs: float = 1.0
    """Passes over the accepted traces (used when ``steps`` is ``None``)."""
    steps: int | None = None
    """Optimisation steps; overrides ``epochs`` (handy for smoke runs)."""
    lr: float = 2e-5
    """Peak learning rate (linear decay after ``lr_warmup_ratio`` of the steps)."""
    lr_warmup_ratio: float = 0.03
    """Share of the steps with a linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 4
    """Examples per optimisation micro-step (per device)."""
    grad_accum: int = 1
    """Gradient-accumulation steps (effective batch = ``batch_size × grad_accum``)."""
    max_seq_len: int = 2048
    """Tokens per example (prompt + completion); longer examples are cut from the right (the number
    whose completion was cut is reported in ``metrics.json``; one cut inside its prompt is dropped by
    TRL). A re-ranking prompt with 50 history items and 10 candidates is ~1,500–2,500 tokens."""

    # LoRA, checkpoints, logs, device, seed: gr2.training_config.TrainingFields
