"""RL stage (DAPO) of GR2: rewards and, later, the trainer.

Kept light on purpose: importing ``gr2.rl`` pulls in numpy only (no torch); heavy modules are
imported from their own submodules.
"""

from __future__ import annotations

from gr2.rl.rewards import (
    DEFAULT_ALPHA,
    DEFAULT_INVALID,
    REWARDS,
    RewardFn,
    auc_reward,
    conditional_reward,
    format_reward,
    identity_copy,
    is_valid_order,
    naive_reward,
    ndcg_reward,
    rank_promotion,
    soft_overlong_penalty,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_INVALID",
    "REWARDS",
    "RewardFn",
    "auc_reward",
    "conditional_reward",
    "format_reward",
    "identity_copy",
    "is_valid_order",
    "naive_reward",
    "ndcg_reward",
    "rank_promotion",
    "soft_overlong_penalty",
]
