"""The rating reward (RecZero's rule-based reward, docs/rating.md), pure functions plus the TRL adapter.

For an answer parsed by :func:`gr2.prompts.rating.parse_rating` and the true rating ``y``:

    r = invalid                                    no usable rating (missing, not a number, out of
                                                   [1, 5], repeated blocks, malformed tags)
    r = fmt · [status == ok] + 1 - |ŷ - y| / 4     otherwise

``fmt`` (``rating.format_reward``, default 1) is the format credit: the three steps and the rating,
each once, in order, nothing outside. The closeness term is in [0, 1], 1 only for the exact rating,
so ``invalid`` (< 0) is below every answer with a rating, and the same rating scores ``fmt`` more
with the steps than without them. Out-of-range values are never clipped into the scale: clipping
would make "1e9" as good as "5". Absolute error is minimised in expectation by the *median* of what
the model believes, so RL pushes towards a low MAE more than a low RMSE (which wants the mean).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gr2.prompts.chat import completion_text
from gr2.prompts.rating import RATING_MAX, RATING_MIN, ParsedRating, parse_rating

__all__ = ["RatingReward", "closeness", "rating_reward"]


def closeness(pred: float, true: float) -> float:
    """``1 - |pred - true| / 4``: 1 for the exact rating, 0 for the far end of the scale."""
    return 1.0 - abs(pred - true) / (RATING_MAX - RATING_MIN)


def rating_reward(parsed: ParsedRating, true: float, format_reward: float = 1.0, invalid: float = -1.0) -> float:
    """The reward of one parsed answer (formula in the module docstring)."""
    if parsed.rating is None:
        return invalid
    return format_reward * parsed.format_ok + closeness(parsed.rating, true)


class RatingReward:
    """TRL reward function: parse each completion, score it against the row's ``true_rating``.
    Logs (TRL's ``log_metric``) ``rating/rated_rate`` (a usable rating), ``rating/format_rate``
    (``ok``) and ``rating/abs_error`` (mean over rated answers)."""

    __name__ = "rating_reward"  # TRL names its metrics rewards/<__name__>/...

    def __init__(self, format_reward: float = 1.0, invalid: float = -1.0) -> None:
        self.format_reward = format_reward
        self.invalid = invalid

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], *, true_rating: Sequence[float],
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        parsed = [parse_rating(completion_text(c)) for c in completions]
        rewards = [rating_reward(p, float(y), self.format_reward, self.invalid) for p, y in zip(parsed, true_rating)]
        if log_metric is not None and parsed:
            errors = [abs(p.rating - float(y)) for p, y in zip(parsed, true_rating) if p.rating is not None]
            log_metric("rating/rated_rate", len(errors) / len(parsed))
            log_metric("rating/format_rate", float(np.mean([p.format_ok for p in parsed])))
            if errors:
                log_metric("rating/abs_error", float(np.mean(errors)))
        return rewards
