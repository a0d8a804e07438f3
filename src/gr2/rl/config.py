"""Configuration of the ``rl`` stage (docs/method.md §7, DAPO). No heavy imports: read by :mod:`gr2.config`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

from gr2.checks import at_least, check, positive
from gr2.prompts.render import PromptConfig
from gr2.training.config import TrainingFields

RewardName = Literal["conditional", "naive", "auc", "ndcg"]
"""Keys of :data:`gr2.rl.rewards.REWARDS` (named here so reading the config needs no numpy)."""
REWARD_NAMES: tuple[str, ...] = get_args(RewardName)


@dataclass
class RLConfig(TrainingFields):
    """Stage 3b: DAPO on the re-ranking task with the conditional reward (docs/method.md §7)."""

    # -- policy ---------------------------------------------------------------------------------
    init: str = "sft"
    """Starting policy: ``sft`` (this run's ``sft/model``), ``midtrain`` (this run's
    ``midtrain/model``), or anything ``gr2.llm.registry.load`` resolves (a registry name, a
    ``save_pretrained`` folder, a cached hub id)."""

    # -- reward ---------------------------------------------------------------------------------
    reward: RewardName = "conditional"
    """Task reward (``gr2.rl.rewards``): ``conditional`` (the paper's, single positive), ``naive``
    (hackable, for the ablation only), ``auc`` / ``ndcg`` (multi-positive slates)."""
    alpha: float = 0.2
    """Weight α of the format reward [P]."""
    invalid_reward: float = -1.0
    """Reward of an output that does not parse into a valid permutation [D]."""
    overlong_buffer: int = 128
    """DAPO's soft overlong punishment buffer ``L_c`` in tokens: completions longer than
    ``max_completion_length - overlong_buffer`` lose up to 1 (linearly, -1 at the limit). 0 turns it
    off (generation never exceeds ``max_completion_length``)."""

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
    prompts [DAPO] (``gr2.rl.dapo``)."""
    max_resample_rounds: int = 3
    """Extra generation rounds at most per step to refill dropped groups; if the batch is still not
    full the step trains on the groups it has (logged)."""
    constrained: bool | None = None
    """Rollouts valid by construction (``gr2.llm.constrained``): sampling may only write a ranking of
    the prompt's own candidates, each once, in the SFT answer format (the explanation, with
    reasoning, stays free text). A weak policy then earns ranking rewards instead of -1 for every
    malformed answer; the format term no longer varies (every answer is valid), except for the
    explanation being non-empty. ``None``: on for the reasoning-free variant, off with reasoning
    (the paper samples freely and its format credit rewards learning the format). Needs
    transformers' ``generate``: not available with ``use_vllm``."""
    use_vllm: bool = False
    """Generate rollouts with vLLM through TRL (``GRPOConfig.use_vllm``; needs ``pip install vllm`` and a
    GPU). Off: transformers' ``generate`` (CPU-safe)."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    """TRL's vLLM mode: ``colocate`` (vLLM inside the training process) or ``server`` (a separate
    ``trl vllm-serve`` process)."""
    max_completion_length: int = 512
    """Tokens generated per completion at most (``L_max``; GR2 writes ~130 reasoning tokens, and ten
    SIDs with their JSON take ~80 more)."""
    temperature: float = 1.0
    """Rollout sampling temperature (DAPO: 1.0)."""
    top_p: float = 1.0
    """Rollout nucleus-sampling mass (DAPO: 1.0)."""

    # -- prompts --------------------------------------------------------------------------------
    reasoning: bool = True
    """``True``: prompts ask for the explanation + ranking JSON and the format reward requires a
    non-empty explanation. ``False``: the reasoning-free variant (technical report's "reasoning
    internalisation"): prompts ask for the ranking only and the format reward does not require an
    explanation."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """How prompts are rendered (``gr2.prompts.render.PromptConfig``; default: candidates shown
    shuffled — the position-bias counter of docs/method.md §7 — while the reward is computed against the
    true pre-rank order). Its ``reasoning`` field is ignored: ``reasoning`` above decides."""
    split: list[str] = field(default_factory=lambda: ["train"])
    """Candidate lists trained on (``candidates/{split}.parquet`` for each)."""
    n_examples: int | None = None
    """Lists sampled (seeded) from ``split``; ``None``: all of them. Lists without a positive are
    always dropped (every order earns the same reward)."""

    # -- optimisation ---------------------------------------------------------------------------
    lr: float = 1e-6
    """Learning rate (DAPO: 1e-6; constant after ``warmup_steps``)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up."""
    steps: int = 200
    """Optimisation steps."""
    batch_size: int = 8
    """Prompts (groups) per optimisation step and device; each brings ``num_generations``
    completions."""
    grad_accum: int = 1
    """Gradient-accumulation micro-batches per step (``batch_size * num_generations`` must be
    divisible by it); one generation round serves the whole step."""
    save_steps: int = 50
    """Checkpoint every N steps under ``rl/checkpoints/``; a re-run resumes from the latest one."""
    logging_steps: int = 1
    """Write a line to ``rl/log.jsonl`` and TensorBoard (``rl/tb/``) every N steps."""

    def __post_init__(self) -> None:
        if isinstance(self.prompt, dict):
            self.prompt = PromptConfig(**self.prompt)
        checks = {
            **self.training_checks(),
            f"lr must be > 0, got {self.lr}": positive(self.lr),
            f"reward must be one of {REWARD_NAMES}": self.reward in REWARD_NAMES,
            "alpha must be >= 0": self.alpha >= 0,
            "num_generations must be >= 2": self.num_generations >= 2,
            "max_completion_length must be >= 1": self.max_completion_length >= 1,
            "overlong_buffer must be in [0, max_completion_length]":
                0 <= self.overlong_buffer <= self.max_completion_length,
            "max_resample_rounds must be >= 0": self.max_resample_rounds >= 0,
            "temperature must be > 0 (rollouts are sampled)": self.temperature > 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "scale_rewards must be 'group' or 'none'": self.scale_rewards in ("group", "none"),
            f"steps must be >= 1, got {self.steps}": at_least(self.steps, 1),
            f"batch_size must be >= 1, got {self.batch_size}": at_least(self.batch_size, 1),
            "grad_accum must divide batch_size * num_generations":
                self.grad_accum >= 1 and (self.batch_size * self.num_generations) % self.grad_accum == 0,
            "split must name at least one split": len(self.split) > 0,
            "n_examples must be >= 1 or None": self.n_examples is None or self.n_examples >= 1,
            "constrained rollouts need transformers' generate, not vLLM: set constrained=false with use_vllm "
            "(constrained is on by default when reasoning=false)": not (self.constrained_rollouts and self.use_vllm),
        }
        check("rl", checks)

    @property
    def constrained_rollouts(self) -> bool:
        """Whether rollouts are sampled through the ranking constraint (``constrained`` resolved)."""
        return (not self.reasoning) if self.constrained is None else self.constrained

    @property
    def prompt_config(self) -> PromptConfig:
        """The prompt settings actually used (``prompt`` with ``reasoning`` from this config)."""
        return dataclasses.replace(self.prompt, reasoning=self.reasoning)
