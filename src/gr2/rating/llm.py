"""The student on the rating task: its prompts, its greedy answers, and pure RL (RecZero: DAPO from
the model as it is, no SFT) with the rating reward."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gr2.prompts.chat import apply_chat_template
from gr2.prompts.rating import rating_messages
from gr2.rating.config import RatingConfig
from gr2.rating.data import Example
from gr2.rating.rewards import RatingReward

__all__ = ["answer_settings", "answers", "prompts", "train_rl"]

#: ``item_id → (title, categories)``, what a prompt shows of an item.
ItemTexts = Mapping[int, tuple[str, Sequence[str]]]


def prompts(examples: Sequence[Example], items: ItemTexts, tokenizer: Any, noun: str) -> list[str]:
    """The prompt text of each example: :func:`gr2.prompts.rating.rating_messages` through the
    tokenizer's chat template (ChatML when it has none), as every LLM stage renders prompts."""
    return [apply_chat_template(tokenizer, rating_messages([(*items[i], r) for i, r in e.history], items[e.item],
                                                           noun), fallback="chatml")
            for e in examples]


def answer_settings(cfg: RatingConfig) -> dict[str, Any]:
    """How :func:`answers` generates: greedy answers of at most ``max_completion_length`` tokens (the
    RL rollouts' limit), ``eval_batch_size`` prompts at a time (``params``, ``batch_size``)."""
    from gr2.llm.generate import GenerationParams

    return {"params": GenerationParams(max_new_tokens=cfg.max_completion_length, temperature=0.0),
            "batch_size": cfg.eval_batch_size}


def answers(model: Any, tokenizer: Any, texts: Sequence[str], cfg: RatingConfig) -> list[str]:
    """The student's answers to ``texts``, generated as :func:`answer_settings` says."""
    from gr2.llm.generate import generate_texts

    return generate_texts(model, tokenizer, texts, **answer_settings(cfg), progress=True)


def train_rl(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], cfg: RatingConfig,
             out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """DAPO on ``rows`` (``prompt`` text, ``true_rating``) with :class:`RatingReward`. Writes
    ``out_dir/{tb/, checkpoints/, model/}`` and resumes from the latest checkpoint. Returns
    ``(trained model, info)``: ``global_step``, ``train_loss``, ``seconds``, ``device``, ``log``
    (TRL's per-step logs: reward, its std, ``rating/*`` rates, ``dapo/*``)."""
    from gr2.training.dapo import train_dapo

    model, trainer, info = train_dapo(model, tokenizer, rows, cfg, out_dir,
                                      RatingReward(cfg.format_reward, cfg.invalid_reward))
    return model, {**info, "log": [h for h in trainer.state.log_history if "reward" in h]}
