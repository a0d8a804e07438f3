"""Configuration of the ``rating`` stage (docs/rating.md). No heavy imports: read by :mod:`gr2.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gr2.checks import at_least, check, positive
from gr2.training.config import DAPOFields


@dataclass
class RatingConfig(DAPOFields):
    """The rating-prediction task (RecZero, docs/method.md §10): baselines, the student zero-shot, then
    pure RL (DAPO, no SFT) with the rating reward, and RMSE / MAE of every row. Runs with
    ``task: rating`` (stages ``data`` → ``rating``). The DAPO and optimisation fields are
    :class:`~gr2.training.config.DAPOFields`."""

    # -- data -----------------------------------------------------------------------------------
    split: Literal["val", "test"] = "test"
    """Rows scored: each user's last rating (``test``) or the one before (``val``). Baselines are
    fitted on every rating before them (for ``test``: the training and validation ratings)."""
    max_history: int = 20
    """Rated items shown in a prompt (the most recent ones)."""
    item_noun: str = "movie"
    """What the prompt calls an item ("movie" for MovieLens)."""

    # -- the LLM rows ---------------------------------------------------------------------------
    model: str = "smollm2-135m"
    """The student: a registry name, a ``save_pretrained`` folder, or this run's ``midtrain``
    (``gr2.runs.model_source``)."""
    eval_examples: int | None = 200
    """Users of ``split`` the LLM rows are scored on (a seeded sample, the same for every row);
    ``None``: all. The baselines are scored on all users and on this sample."""
    eval_batch_size: int = 8
    """Prompts generated together (greedy) in the LLM rows."""
    train_examples: int = 2000
    """RL prompts: a seeded sample of users, each with their last training rating as the target."""

    # -- reward (gr2.rating.rewards) ------------------------------------------------------------
    format_reward: float = 1.0
    """Added to the closeness ``1 - |pred - true| / 4`` when the three steps and the rating parse (``ok``)."""
    invalid_reward: float = -1.0
    """The reward of an answer without a usable rating (missing, not a number, out of [1, 5], repeated,
    malformed): below every answer with one (those earn >= 0)."""

    # -- matrix factorisation baseline (scikit-surprise's SVD) ----------------------------------
    mf_factors: int = 100
    """Latent factors."""
    mf_epochs: int = 20
    """SGD epochs."""
    mf_lr: float = 0.005
    """SGD learning rate."""
    mf_reg: float = 0.02
    """L2 regularisation of factors and biases."""

    # -- DAPO defaults for this task ------------------------------------------------------------
    max_completion_length: int = 256
    """Tokens per answer at most, in RL and in the LLM rows (three short steps and a rating)."""

    bootstrap: int = 1000
    """Bootstrap resamples of the RMSE and MAE intervals."""

    def __post_init__(self) -> None:
        check("rating", {
            **self.dapo_checks(),
            f"max_history must be >= 1, got {self.max_history}": at_least(self.max_history, 1),
            f"eval_examples must be >= 1 or None, got {self.eval_examples}":
                at_least(self.eval_examples, 1, none_ok=True),
            f"eval_batch_size must be >= 1, got {self.eval_batch_size}": at_least(self.eval_batch_size, 1),
            f"train_examples must be >= 1, got {self.train_examples}": at_least(self.train_examples, 1),
            f"format_reward must be finite and >= 0, got {self.format_reward}":
                self.format_reward == 0 or positive(self.format_reward),
            f"invalid_reward must be finite and < 0 (below every rated answer), got {self.invalid_reward}":
                positive(-self.invalid_reward),
            f"mf_factors must be >= 1, got {self.mf_factors}": at_least(self.mf_factors, 1),
            f"mf_epochs must be >= 1, got {self.mf_epochs}": at_least(self.mf_epochs, 1),
            f"mf_lr must be > 0, got {self.mf_lr}": positive(self.mf_lr),
            f"mf_reg must be >= 0, got {self.mf_reg}": at_least(self.mf_reg, 0),
            f"bootstrap must be >= 1, got {self.bootstrap}": at_least(self.bootstrap, 1),
            "item_noun must not be blank": bool(str(self.item_noun).strip()),
        })
