"""The TRL reward adapter on hand-made completions: valid, invalid, copies, reasoning, overlong."""

from __future__ import annotations

import json

import pytest

from gr2.rl.dapo import RerankReward
from gr2.rl.rewards import DEFAULT_ALPHA as A

SIDS = ["<s_a_0><s_b_0>", "<s_a_0><s_b_1>", "<s_a_1><s_b_0>", "<s_a_1><s_b_1>"]
LABELS = [0, 0, 1, 0]  # the target is pre-rank candidate 2 (rank 3 of 4)
SHOWN = [3, 1, 0, 2]   # presentation: shown position → pre-rank index


def answer(order: list[int], explanation: str | None = "history says so") -> str:
    obj = {"recommendations": [SIDS[i] for i in order]}
    if explanation is not None:
        obj = {"explanation": explanation, **obj}
    return json.dumps(obj)


def test_valid_promotion_earns_rank_gain_plus_alpha():
    s = RerankReward().score(answer([2, 0, 1, 3]), SIDS, LABELS, SHOWN)
    assert s.valid and s.format_ok and not s.copy_shown and not s.copy_prerank
    assert s.task_reward == pytest.approx(2 / 4 + A) and s.reward == s.task_reward and s.overlong_penalty == 0


def test_candidate_numbers_are_read_through_the_presentation():
    # "[4]" is the 4th candidate shown = pre-rank 2 = the target
    text = json.dumps({"explanation": "x", "recommendations": [4, 1, 2, 3]})
    s = RerankReward().score(text, SIDS, LABELS, SHOWN)
    assert s.valid and s.task_reward == pytest.approx(2 / 4 + A)


@pytest.mark.parametrize("text", [
    answer([2, 0, 1]),                      # missing
    answer([2, 2, 0, 1]),                   # duplicate
    "I think the second one is best",       # no JSON
    answer([2, 0, 1, 3])[:-5],              # truncated JSON
])
def test_invalid_outputs_earn_invalid(text):
    s = RerankReward(invalid=-1.0).score(text, SIDS, LABELS, SHOWN)
    assert not s.valid and not s.format_ok and s.task_reward == -1.0 and not s.copy_shown


def test_copying_the_prerank_order_is_worth_alpha_only_under_naive():
    text = answer([0, 1, 2, 3])
    cond = RerankReward("conditional").score(text, SIDS, LABELS, SHOWN)
    naive = RerankReward("naive").score(text, SIDS, LABELS, SHOWN)
    assert cond.copy_prerank and not cond.copy_shown
    assert cond.task_reward == 0.0 and naive.task_reward == pytest.approx(A)


def test_copying_the_shown_order_is_detected_and_scored_on_the_true_prerank():
    s = RerankReward().score(answer(SHOWN), SIDS, LABELS, SHOWN)
    assert s.copy_shown and not s.copy_prerank
    assert s.task_reward == pytest.approx((3 - 4) / 4)  # target moved from rank 3 to rank 4: no α
    same = RerankReward().score(answer([0, 1, 2, 3]), SIDS, LABELS, None)  # shown in pre-rank order
    assert same.copy_shown and same.copy_prerank


def test_missing_explanation_loses_the_format_term_only_when_reasoning_is_required():
    text = answer([2, 0, 1, 3], explanation=None)
    with_reasoning = RerankReward(reasoning=True).score(text, SIDS, LABELS, SHOWN)
    without = RerankReward(reasoning=False).score(text, SIDS, LABELS, SHOWN)
    assert with_reasoning.valid and not with_reasoning.format_ok
    assert with_reasoning.task_reward == pytest.approx(2 / 4)
    assert without.format_ok and without.task_reward == pytest.approx(2 / 4 + A)


def test_soft_overlong_penalty_is_added():
    r = RerankReward(max_completion_length=100, overlong_buffer=20)
    text = answer([2, 0, 1, 3])
    assert r.score(text, SIDS, LABELS, SHOWN, n_tokens=80).overlong_penalty == 0
    s = r.score(text, SIDS, LABELS, SHOWN, n_tokens=90)
    assert s.overlong_penalty == pytest.approx(-0.5) and s.reward == pytest.approx(2 / 4 + A - 0.5)
    assert r.score("garbage", SIDS, LABELS, SHOWN, n_tokens=100).reward == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        r.score(text, SIDS, LABELS, SHOWN)


def test_trl_call_convention_and_metrics():
    r = RerankReward(max_completion_length=10, overlong_buffer=2)
    completions = [answer([2, 0, 1, 3]), [{"role": "assistant", "content": answer([0, 1, 2, 3])}], "nope"]
    logged: dict[str, float] = {}
    out = r(prompts=["p"] * 3, completions=completions, candidate_sids=[SIDS] * 3, candidate_labels=[LABELS] * 3,
            presented=[SHOWN] * 3, completion_ids=[[1] * 5, [1] * 5, [1] * 10], log_metric=logged.__setitem__,
            trainer_state=None, example_id=["a", "b", "c"])
    assert out == pytest.approx([2 / 4 + A, 0.0, -2.0])
    assert logged["rl/valid_rate"] == pytest.approx(2 / 3)
    assert logged["rl/copy_prerank_rate"] == pytest.approx(1 / 3) and logged["rl/copy_shown_rate"] == 0
    assert logged["rl/overlong_penalty"] == pytest.approx(-1 / 3)
    assert r.__name__ == "conditional_reward"


def test_unknown_reward_is_refused():
    with pytest.raises(ValueError):
        RerankReward("bogus")


THINK = ("<user_interests>hair care</user_interests><item_features>two conditioners</item_features>"
         "<compatibility>the conditioner fits</compatibility>")


@pytest.mark.parametrize(("explanation", "format_ok"), [
    (THINK, True),
    ("free text reasoning", False),  # no steps
    (THINK.replace("<user_interests>hair care</user_interests>", "") + "<user_interests>x</user_interests>",
     False),  # out of order
    (("<user_interests>hair care</user_interests><item_features> </item_features>"
      "<compatibility>fits</compatibility>"), False),  # an empty step
    ("Sure. " + THINK, False),  # text around the steps
])
def test_think_format_earns_the_format_credit_only_with_the_three_steps(explanation, format_ok):
    text = answer([2, 0, 1, 3], explanation)
    s = RerankReward(reasoning_format="think").score(text, SIDS, LABELS, SHOWN)
    assert s.valid and s.format_ok is format_ok, "the ranking counts whatever the steps"
    assert s.task_reward == pytest.approx(2 / 4 + (A if format_ok else 0.0))
    free = RerankReward().score(text, SIDS, LABELS, SHOWN)
    assert free.format_ok and free.task_reward == pytest.approx(2 / 4 + A), "free format: any explanation"
    reasoning_free = RerankReward(reasoning=False, reasoning_format="think").score(text, SIDS, LABELS, SHOWN)
    assert reasoning_free.format_ok, "without reasoning there is no structure to check"
    with pytest.raises(ValueError, match="reasoning_format"):
        RerankReward(reasoning_format="tags")


def test_the_rl_stage_passes_the_prompt_format_to_the_reward():
    from gr2.config import load_config

    cfg = load_config(None, ["rl.prompt.reasoning_format=think"]).rl
    assert cfg.prompt_config.think and cfg.prompt.reasoning_format == "think"
    assert not load_config(None, ["rl.prompt.reasoning_format=think", "rl.reasoning=false"]).rl.prompt_config.think
