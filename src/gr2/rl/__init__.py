"""RL stage (DAPO) of GR2: rewards, the reward-hacking ablation, the DAPO trainer and the stage.

Kept light on purpose: importing ``gr2.rl`` pulls in numpy only (no torch). The rewards are imported
eagerly; every other name is loaded on first use from its submodule:

* :mod:`gr2.rl.config` — ``RLConfig``;
* :mod:`gr2.rl.ablation` — ``expected_rewards``, ``markdown_table`` (pure);
* :mod:`gr2.rl.dapo` — ``RerankReward`` (the trainer itself is :mod:`gr2.training.dapo`);
* :mod:`gr2.rl.stage` — ``run_rl``, ``train_rl``.
"""

from __future__ import annotations

from gr2._lazy import lazy_exports
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

_LAZY = {
    "RLConfig": "config",
    "expected_rewards": "ablation",
    "markdown_table": "ablation",
    "RerankReward": "dapo",
    "run_rl": "stage",
    "train_rl": "stage",
}

__all__ = [
    *sorted(_LAZY),
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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
