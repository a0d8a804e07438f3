"""DAPO for the re-ranker: the reward adapter. The trainer (``GRPOTrainer`` with dynamic sampling and
constrained rollouts) is :mod:`gr2.training.dapo`, shared with the ``rating`` stage; its names are
imported here for the ``rl`` stage and its tests.

**The reward** (:class:`RerankReward`, a TRL ``reward_funcs`` callable). Each completion is read
with :func:`gr2.prompts.parse.parse_output` against the example's candidates and presentation
(``require_explanation=False``: the strict ``order`` — a permutation only when the answer listed
every candidate exactly once — carries the ranking; whether a non-empty explanation was written —
with ``reasoning_format="think"``, as the three tagged steps in order (``ParseResult.reasoning_ok``) —
is the separate ``reasoning_ok`` of the format term). The task reward is
``gr2.rl.rewards.REWARDS[name](order, labels, alpha, reasoning_ok, invalid)`` — an invalid output
earns ``invalid`` — against the **true pre-rank order** whatever order the candidates were shown in;
DAPO's soft overlong punishment (:func:`gr2.rl.rewards.soft_overlong_penalty`) of the completion's
token count is added. Per call it reports (TRL's ``log_metric``) ``rl/valid_rate``,
``rl/format_rate``, ``rl/copy_shown_rate`` (the answer repeats the order the candidates were shown
in: the position-copying hack), ``rl/copy_prerank_rate`` (it repeats the pre-rank order: the hack
the conditional reward closes), ``rl/task_reward`` and ``rl/overlong_penalty``; rates are shares
of all completions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr2.prompts.chat import completion_text
from gr2.prompts.parse import check_reasoning_format, parse_output
from gr2.rl.rewards import (
    DEFAULT_ALPHA,
    DEFAULT_INVALID,
    REWARDS,
    identity_copy,
    soft_overlong_penalty,
)

__all__ = ["RerankReward", "Scored"]


# --------------------------------------------------------------------------- reward adapter
@dataclass(frozen=True)
class Scored:
    """One completion's reward and what went into it."""

    reward: float
    """``task_reward + overlong_penalty`` (what the policy is trained on)."""
    task_reward: float
    """The ranking reward of ``gr2.rl.rewards`` (``invalid`` for an invalid output)."""
    overlong_penalty: float
    """DAPO's soft overlong punishment, in ``[-1, 0]``."""
    valid: bool
    """The answer parsed into a valid permutation of the candidates."""
    format_ok: bool
    """Valid and, when reasoning is required, with a non-empty explanation — the three tagged steps with
    ``reasoning_format="think"`` (``R_fmt = 1``)."""
    copy_shown: bool
    """The ranking repeats the order the candidates were shown in."""
    copy_prerank: bool
    """The ranking repeats the pre-rank order."""


class RerankReward:
    """TRL reward function: parse each completion, score it with ``gr2.rl.rewards``, add the
    soft overlong penalty. Dataset columns used: ``candidate_sids`` and ``candidate_labels`` (both
    in pre-rank order) and ``presented`` (shown position → pre-rank index; absent = pre-rank order).
    (Not ``labels``: transformers' ``Trainer`` gives that column name a meaning of its own.)"""

    def __init__(
        self,
        reward: str = "conditional",
        alpha: float = DEFAULT_ALPHA,
        invalid: float = DEFAULT_INVALID,
        reasoning: bool = True,
        max_completion_length: int | None = None,
        overlong_buffer: int = 0,
        reasoning_format: str = "free",
    ) -> None:
        check_reasoning_format(reasoning_format)
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; known: {sorted(REWARDS)}")
        if overlong_buffer and max_completion_length is None:
            raise ValueError("overlong_buffer > 0 needs max_completion_length")
        self.fn = REWARDS[reward]
        self.alpha = alpha
        self.invalid = invalid
        self.reasoning = reasoning
        self.reasoning_format = reasoning_format if reasoning else "free"
        self.max_completion_length = max_completion_length
        self.overlong_buffer = overlong_buffer
        self.__name__ = f"{reward}_reward"  # TRL names its metrics rewards/<__name__>/...

    def score(self, text: str, candidate_sids: Sequence[str], labels: Sequence[float],
              presented: Sequence[int] | None = None, n_tokens: int | None = None) -> Scored:
        """Score one completion (``n_tokens``: its length in tokens, for the overlong penalty)."""
        parsed = parse_output(text, candidate_sids, presented, require_explanation=False,
                              reasoning_format=self.reasoning_format)
        order = parsed.order
        reasoning_ok = (not self.reasoning) or parsed.reasoning_ok
        task = float(self.fn(order, labels, self.alpha, reasoning_ok, self.invalid))
        penalty = 0.0
        if self.overlong_buffer:
            if n_tokens is None:
                raise ValueError("the overlong penalty needs the completion's token count")
            penalty = soft_overlong_penalty(n_tokens, self.max_completion_length, self.overlong_buffer)
        valid = order is not None
        return Scored(
            reward=task + penalty, task_reward=task, overlong_penalty=penalty, valid=valid,
            format_ok=valid and reasoning_ok,
            copy_shown=identity_copy(order, parsed.presented), copy_prerank=identity_copy(order),
        )

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], *,
                 candidate_sids: Sequence[Sequence[str]], candidate_labels: Sequence[Sequence[float]],
                 presented: Sequence[Sequence[int]] | None = None,
                 completion_ids: Sequence[Sequence[int]] | None = None,
                 log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        n = len(completions)
        scored = [
            self.score(completion_text(completions[i]), candidate_sids[i], candidate_labels[i],
                       None if presented is None else presented[i],
                       None if completion_ids is None else len(completion_ids[i]))
            for i in range(n)
        ]
        if log_metric is not None and n:
            for name, values in (
                ("rl/valid_rate", [s.valid for s in scored]),
                ("rl/format_rate", [s.format_ok for s in scored]),
                ("rl/copy_shown_rate", [s.copy_shown for s in scored]),
                ("rl/copy_prerank_rate", [s.copy_prerank for s in scored]),
                ("rl/task_reward", [s.task_reward for s in scored]),
                ("rl/overlong_penalty", [s.overlong_penalty for s in scored]),
            ):
                log_metric(name, float(np.mean(values)))
        return [s.reward for s in scored]
