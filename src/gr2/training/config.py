"""Fields every training stage (``midtrain``, ``sft``, ``rl``) shares: LoRA, checkpoints, logging,
device and seed. No heavy imports: :mod:`gr2.config` reads it. A stage whose default differs
redeclares the field (``RLConfig`` checkpoints and logs more often)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gr2.checks import at_least


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

    def training_checks(self) -> dict[str, bool]:
        """Range checks of these shared fields, for the stage's ``__post_init__`` (:func:`gr2.checks.check`)."""
        return {
            f"lora_r must be >= 1, got {self.lora_r}": at_least(self.lora_r, 1),
            f"lora_dropout must be in [0, 1), got {self.lora_dropout}":
                at_least(self.lora_dropout, 0) and self.lora_dropout < 1,
            f"save_steps must be >= 1, got {self.save_steps}": at_least(self.save_steps, 1),
            f"save_total_limit must be >= 1, got {self.save_total_limit}": at_least(self.save_total_limit, 1),
            f"logging_steps must be >= 1, got {self.logging_steps}": at_least(self.logging_steps, 1),
            f"num_threads must be >= 1 or None, got {self.num_threads}": at_least(self.num_threads, 1, none_ok=True),
        }
