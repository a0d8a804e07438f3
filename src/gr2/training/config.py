"""Fields every training stage (``midtrain``, ``sft``, ``rl``, ``rating``) shares: LoRA, checkpoints,
logging, device and seed (:class:`TrainingFields`); and those of every stage trained with DAPO
(``rl``, ``rating``: :class:`DAPOFields`, read by :func:`gr2.training.dapo.grpo_args`). No heavy
imports: :mod:`gr2.config` reads it. A stage whose default differs redeclares the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gr2.checks import at_least, positive


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
    group_by_length: bool = False
    """Batch examples of similar length together (transformers' length-grouped sampler: shuffled
    mega-batches sorted by length), so fewer padding tokens are trained on. Mid-training and the trace
    SFT only (the listwise objective and RL batch their own way). On the medium profile's mid-training
    examples random batches of 4 are ~48% padding before truncation, length-grouped ones <1%
    (BENCHMARKS.md, "Training throughput"). Changes which examples share a step, so a run's numbers."""
    compact_lm_head: bool = True
    """Project only the positions a loss reads (completion tokens) through the LM head in TRL's fused
    loss, on every device. TRL does so only where Triton runs (CUDA/XPU); elsewhere it projects every
    position — prompt and padding included — through the 49k-way head (:func:`gr2.training.loop.compact_lm_head`;
    the saving is measured in BENCHMARKS.md, "Training throughput"). Same log-probabilities either way."""

    torch_compile: bool = False
    """Compile the model with ``torch.compile`` (transformers' ``torch_compile``) before training: fused
    kernels for the forward and backward, paid for by a compile at the first steps and again at every
    new batch shape: on 2 CPU cores 1.13× faster with fixed-length batches, 2.7× slower with
    mid-training's varying lengths (BENCHMARKS.md, "torch_compile on the CPU")."""
    liger_kernels: bool = False
    """Liger's Triton kernels (fused RMSNorm, SwiGLU, RoPE and linear cross-entropy: the logits are
    never materialised) through transformers' ``use_liger_kernel``. CUDA only and ``pip install
    liger-kernel``; refused otherwise (:func:`gr2.training.setup.start_training`). Untested on a GPU so far."""

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


@dataclass
class DAPOFields(TrainingFields):
    """Base of :class:`~gr2.rl.config.RLConfig` and :class:`~gr2.rating.config.RatingConfig`: DAPO
    (TRL's ``GRPOTrainer`` with :class:`gr2.training.dapo.DAPOTrainer`'s dynamic sampling)."""

    # -- DAPO -----------------------------------------------------------------------------------
    num_generations: int = 4
    """Completions per prompt (the group size G)."""
    epsilon: float = 0.2
    """Lower clip ε_low of the importance ratio [DAPO]."""
    epsilon_high: float = 0.28
    """Upper clip ε_high ("clip-higher") [DAPO]."""
    beta: float = 0.0
    """KL coefficient; 0 = no KL term and no reference model [DAPO]."""
    loss_type: str = "dapo"
    """TRL loss aggregation; ``dapo`` = token-level normalisation over the whole batch [DAPO]."""
    scale_rewards: Literal["group", "none"] = "group"
    """Advantage scaling: ``group`` divides by the group's reward std (DAPO/GRPO), ``none`` only
    centres (Dr. GRPO). Batch-level scaling is not offered: dynamic sampling merges groups from
    several generation rounds, which is only exact when each group is normalised on its own."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards are all equal (no learning signal) and refill the batch with new
    prompts [DAPO] (``gr2.training.dapo``)."""
    max_resample_rounds: int = 3
    """Extra generation rounds at most per step to refill dropped groups; if the batch is still not
    full the step trains on the groups it has (logged)."""
    rollout_cache: Literal["dynamic", "static"] = "dynamic"
    """KV cache of rollout generation (TRL's ``cache_implementation``): ``dynamic`` grows with the
    sequence; ``static`` is allocated once at ``max_completion_length`` (fixed shapes), and on CUDA
    transformers then compiles the decoding step (``torch.compile``: no per-token Python overhead
    after the first call). Untested on a GPU so far."""
    use_vllm: bool = False
    """Generate rollouts with vLLM through TRL (``GRPOConfig.use_vllm``; needs ``pip install vllm`` and a
    GPU). Off: transformers' ``generate`` (CPU-safe)."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    """TRL's vLLM mode: ``colocate`` (vLLM inside the training process) or ``server`` (a separate
    ``trl vllm-serve`` process)."""
    max_completion_length: int = 512
    """Tokens generated per completion at most (``L_max``)."""
    temperature: float = 1.0
    """Rollout sampling temperature (DAPO: 1.0)."""
    top_p: float = 1.0
    """Rollout nucleus-sampling mass (DAPO: 1.0)."""
    seeded_rollouts: bool = False
    """Sample each rollout from a random stream of its own, keyed by (``seed``, step, generation round,
    its row in the global batch) (:mod:`gr2.llm.seeded`): the rollouts, and so the whole run, are the
    same whatever the number of training processes (``accelerate launch``). Off: transformers' sampler
    on each process's own generator (another process count samples other rollouts)."""

    # -- optimisation ---------------------------------------------------------------------------
    lr: float = 1e-6
    """Learning rate (DAPO: 1e-6; constant after ``warmup_steps``)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up."""
    steps: int = 200
    """Optimisation steps."""
    batch_size: int = 8
    """Prompts (groups) per optimisation step, over all processes (``accelerate launch``: each of N
    processes generates and trains on ``1/N`` of the completions, :mod:`gr2.training.dist`); each
    brings ``num_generations`` completions."""
    grad_accum: int = 1
    """Gradient-accumulation micro-batches per step (``batch_size * num_generations`` must be
    divisible by it); one generation round serves the whole step."""
    save_steps: int = 50
    """Checkpoint every N steps under ``<stage>/checkpoints/``; a re-run resumes from the latest one."""
    logging_steps: int = 1
    """Log the training metrics (TensorBoard under ``<stage>/tb/``) every N steps."""

    def dapo_checks(self) -> dict[str, bool]:
        """Range checks of these fields and the shared ones, for the stage's ``__post_init__``."""
        return {
            **self.training_checks(),
            f"lr must be > 0, got {self.lr}": positive(self.lr),
            "num_generations must be >= 2": self.num_generations >= 2,
            "max_completion_length must be >= 1": self.max_completion_length >= 1,
            "max_resample_rounds must be >= 0": self.max_resample_rounds >= 0,
            "temperature must be > 0 (rollouts are sampled)": self.temperature > 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "scale_rewards must be 'group' or 'none'": self.scale_rewards in ("group", "none"),
            "rollout_cache must be 'dynamic' or 'static'": self.rollout_cache in ("dynamic", "static"),
            "seeded_rollouts samples through transformers' generate, not vLLM (use_vllm)":
                not (self.seeded_rollouts and self.use_vllm),
            f"steps must be >= 1, got {self.steps}": at_least(self.steps, 1),
            f"batch_size must be >= 1, got {self.batch_size}": at_least(self.batch_size, 1),
            "grad_accum must divide batch_size * num_generations":
                self.grad_accum >= 1 and (self.batch_size * self.num_generations) % self.grad_accum == 0,
        }
