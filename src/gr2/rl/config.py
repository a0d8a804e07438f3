"""Configuration of the ``rl`` stage (docs/method.md §7, DAPO). No heavy imports: read by :mod:`gr2.config`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

from gr2.checks import check
from gr2.prompts.render import PromptConfig
from gr2.training.config import DAPOFields

RewardName = Literal["conditional", "naive", "auc", "ndcg"]
"""Keys of :data:`gr2.rl.rewards.REWARDS` (named here so reading the config needs no numpy)."""
REWARD_NAMES: tuple[str, ...] = get_args(RewardName)


@dataclass
class RLConfig(DAPOFields):
    """Stage 3b: DAPO on the re-ranking task with the conditional reward (docs/method.md §7). The DAPO
    and optimisation fields are :class:`~gr2.training.config.DAPOFields` (``max_completion_length``:
    GR2 writes ~130 reasoning tokens, and ten SIDs with their JSON take ~80 more)."""

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
    constrained: bool | None = None
    """Rollouts valid by construction (``gr2.llm.constrained``): sampling may only write a ranking of
    the prompt's own candidates, each once, in the SFT answer format (the explanation, with
    reasoning, stays free text). A weak policy then earns ranking rewards instead of -1 for every
    malformed answer; the format term no longer varies (every answer is valid), except for the
    explanation being non-empty. ``None``: on for the reasoning-free variant, off with reasoning
    (the paper samples freely and its format credit rewards learning the format). Needs
    transformers' ``generate``: not available with ``use_vllm``."""

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

    def __post_init__(self) -> None:
        if isinstance(self.prompt, dict):
            self.prompt = PromptConfig(**self.prompt)
        checks = {
            **self.dapo_checks(),
            f"reward must be one of {REWARD_NAMES}": self.reward in REWARD_NAMES,
            "alpha must be >= 0": self.alpha >= 0,
            "overlong_buffer must be in [0, max_completion_length]":
                0 <= self.overlong_buffer <= self.max_completion_length,
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
