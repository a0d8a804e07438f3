"""Configuration of the ``sft`` stage (method.md §6). No heavy imports: the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SFTConfig:
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

    # -- LoRA -------------------------------------------------------------------------------
    lora: bool = False
    """Train LoRA adapters instead of every weight; ``sft/model`` is always the merged plain model."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA alpha."""
    lora_dropout: float = 0.05
    """LoRA dropout."""
    lora_targets: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Modules that get LoRA adapters (never ``lm_head``: TRL's fused LM head ignores adapters there)."""

    # -- checkpoints, logs, machine ---------------------------------------------------------
    save_steps: int = 200
    """Checkpoint every N steps under ``sft/checkpoints/``; a re-run resumes from the latest one."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    keep_checkpoints: bool = False
    """Keep ``sft/checkpoints/`` after ``sft/model`` is written (default: delete them)."""
    logging_steps: int = 10
    """Log the loss and its reasoning/ranking parts (TensorBoard under ``sft/tb/``) every N steps."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``. bf16 only on a CUDA device that
    supports it; gradient checkpointing always off (docs/resources.md)."""
    num_threads: int | None = None
    """Torch CPU threads (``None``: torch's default)."""
    seed: int = 0
    """Seeds data order and training."""
