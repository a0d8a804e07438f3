"""Reward-hacking ablation without training: the expected reward of fixed "policies" under each reward.

docs/method.md §7: the naive reward ``R_rank + α R_fmt`` is hacked by copying the input order — the copy
earns ``α`` on every list for nothing — while under the conditional reward a copy earns exactly its
``R_rank`` (0 for the pre-rank order, except ``α`` on lists whose target is already first, the
best any order can do there). This module makes that a table. Policies (one output per list):

* ``copy_shown`` — repeats the order the candidates were shown in (with a shuffled presentation
  this is a random-looking order in pre-rank space: the position-bias hack);
* ``copy_prerank`` — repeats the pre-rank order (the identity): the hack the conditional reward closes;
* ``random`` — a uniformly random valid permutation (expectation estimated over ``n_random`` draws);
* ``oracle`` — labels sorted best first (ties keep pre-rank order);
* ``invalid`` — an output that does not parse.

Every policy writes a reasoning part (``reasoning_ok=True``). Pure: numpy + ``gr2.rl.rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gr2.rl.rewards import DEFAULT_ALPHA, DEFAULT_INVALID, REWARDS, LabelsLike

__all__ = ["POLICIES", "expected_rewards", "markdown_table"]

POLICIES = ("copy_shown", "copy_prerank", "random", "oracle", "invalid")


def expected_rewards(
    labels: Sequence[LabelsLike],
    presented: Sequence[Sequence[int]] | None = None,
    rewards: Sequence[str] = ("naive", "conditional"),
    alpha: float = DEFAULT_ALPHA,
    invalid: float = DEFAULT_INVALID,
    n_random: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``result[policy][reward]`` = mean reward of ``policy`` over the lists.

    ``labels[i]`` are list i's labels in pre-rank order; ``presented[i]`` the order it was shown in
    (pre-rank indices; ``None``: every list shown in pre-rank order, so both copies coincide).
    """
    if presented is not None and len(presented) != len(labels):
        raise ValueError("presented must have one entry per list")
    rng = np.random.default_rng(seed)
    sums = {p: {r: 0.0 for r in rewards} for p in POLICIES}
    for i, labs in enumerate(labels):
        k = len(labs)
        shown = list(range(k)) if presented is None else [int(x) for x in presented[i]]
        orders: dict[str, list[list[int] | None]] = {
            "copy_shown": [shown],
            "copy_prerank": [list(range(k))],
            "random": [rng.permutation(k).tolist() for _ in range(n_random)],
            "oracle": [sorted(range(k), key=lambda j: -float(labs[j]))],
            "invalid": [None],
        }
        for policy, outs in orders.items():
            for name in rewards:
                fn = REWARDS[name]
                sums[policy][name] += float(np.mean([fn(o, labs, alpha, True, invalid) for o in outs]))
    n = max(len(labels), 1)
    return {p: {r: v / n for r, v in per.items()} for p, per in sums.items()}


def markdown_table(result: dict[str, dict[str, float]], digits: int = 3) -> str:
    """``result`` of :func:`expected_rewards` as a Markdown table (one row per policy)."""
    names = list(next(iter(result.values())))
    lines = ["| policy | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for policy, per in result.items():
        lines.append(f"| {policy} | " + " | ".join(f"{per[n]:.{digits}f}" for n in names) + " |")
    return "\n".join(lines)
