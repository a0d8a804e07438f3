"""Fields every training stage (``midtrain``, ``sft``, ``rl``) shares: LoRA, checkpoints, logging,
device and seed. No heavy imports: :mod:`gr2.config` reads it. A stage whose default differs
redeclares the field (``RLConfig`` checkpoints and logs more often)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainingFields:
    """Base of :class:`~gr2.midtrain.config.MidtrainConfig`, :class:`~gr2.sft.config.SFTConfig` and
    :class:`~gr2.rl.config.RLConfig`."""

    # -- LoRA -------------------------------------------------------------------------------
    lora: bool = False
    """Train LoRA adapters instead of every weight (mid-training: in phase 2, plus the SID embedding
    rows); the stage's ``model/`` folder is always the merged, plain model."""
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
    """Checkpoint every N steps (per phase in mid-training) under ``<stage>/checkpoints/``; a re-run
    resumes from the latest one."""
    save_total_limit: int = 2
    """Checkpoints kept."""
    keep_checkpoints: bool = False
    """Keep ``<stage>/checkpoints/`` after ``<stage>/model`` is written (default: delete them)."""
    logging_steps: int = 10
    """Log the training metrics (TensorBoard under ``<stage>/tb/``) every N steps."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``. bf16 only on a CUDA device that
    supports it; gradient checkpointing always off (docs/resources.md)."""
    num_threads: int | None = None
    """Torch CPU threads (``None``: torch's default). On a shared, oversubscribed CPU 1 thread can be
    several times faster than 2 (docs/midtrain.md)."""
    seed: int = 0
    """Seeds the stage's sampling, initialisation and training."""
