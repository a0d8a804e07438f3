"""The reward-hacking ablation: copying the input order pays α under naive, only R_rank under conditional."""

from __future__ import annotations

import pytest

from gr2.prompts.render import PromptConfig, presentation_order
from gr2.rl.ablation import POLICIES, expected_rewards, markdown_table
from gr2.rl.rewards import DEFAULT_ALPHA as A
from gr2.rl.rewards import rank_promotion

K = 10


def one_hot(t: int) -> list[int]:
    return [int(i == t) for i in range(K)]


# targets spread over the slots, one of five lists has its target first
LISTS = [one_hot(t) for t in (0, 1, 3, 5, 9)]
SHOWN = [presentation_order(K, PromptConfig(order="shuffled"), rng_key=f"ex{i}") for i in range(len(LISTS))]


def test_copying_the_prerank_order_earns_alpha_for_nothing_only_under_naive():
    res = expected_rewards(LISTS, SHOWN, n_random=50)
    assert set(res) == set(POLICIES)
    assert res["copy_prerank"]["naive"] == pytest.approx(A)  # α on every list, R_rank = 0
    assert res["copy_prerank"]["conditional"] == pytest.approx(A / 5)  # α only where the target is first
    # under conditional the copy earns nothing beyond R_rank (+ α only on the already-perfect list)
    no_target_first = [labels for labels in LISTS if labels[0] == 0]
    cond_rest = expected_rewards(no_target_first, n_random=1)["copy_prerank"]["conditional"]
    assert cond_rest == 0.0


def test_copying_the_shown_order_is_scored_on_the_true_prerank():
    res = expected_rewards(LISTS, SHOWN, rewards=("conditional",), n_random=1)
    expected = 0.0
    for labels, shown in zip(LISTS, SHOWN):
        r = rank_promotion(shown, labels.index(1))
        expected += r + (A if r > 0 or (labels[0] == 1 and shown[0] == 0) else 0.0)
    assert res["copy_shown"]["conditional"] == pytest.approx(expected / len(LISTS))


def test_policy_ordering():
    res = expected_rewards(LISTS, SHOWN, rewards=("naive", "conditional", "auc", "ndcg"), n_random=100)
    for name in ("naive", "conditional", "auc", "ndcg"):
        assert res["invalid"][name] == -1.0
        assert res["oracle"][name] == max(res[p][name] for p in POLICIES)
    assert res["oracle"]["conditional"] == pytest.approx(res["oracle"]["auc"])  # equal with one positive
    for p in POLICIES:
        assert res[p]["conditional"] <= res[p]["naive"] + 1e-12
    assert res["random"]["conditional"] < res["random"]["naive"]


def test_markdown_table():
    table = markdown_table(expected_rewards(LISTS[:2], n_random=5), digits=2)
    lines = table.splitlines()
    assert lines[0] == "| policy | naive | conditional |" and len(lines) == 2 + len(POLICIES)
    assert "| copy_prerank | 0.20 | 0.10 |" in lines
