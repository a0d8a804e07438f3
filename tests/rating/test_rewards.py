"""The rating reward (gr2.rating.rewards): hand values, exhaustive checks over the scale, and the
hacks a policy could try (a constant answer, out-of-range or missing ratings, hedging, no steps)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from gr2.prompts.rating import answer_text, parse_rating
from gr2.rating.rewards import RatingReward, closeness, rating_reward

STEPS = {"user_interests": "Likes dramas.", "item_features": "A drama.", "compatibility": "Fits."}
SCALE = (1, 2, 3, 4, 5)
#: MovieLens-1M's rating shares (1..5), rounded.
ML1M = np.array([0.056, 0.108, 0.261, 0.349, 0.226])


def reward(text: str, true: float, **kw) -> float:
    return rating_reward(parse_rating(text), true, **kw)


def full(rating) -> str:
    return answer_text(STEPS, rating)


def test_import_is_light():
    code = "import sys, gr2.rating.rewards; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_hand_values():
    assert reward(full(4), 4) == 2.0  # format + exact
    assert reward(full(5), 1) == 1.0  # format + the far end of the scale
    assert reward(full(3.5), 4) == pytest.approx(1.875)
    assert reward("<rating>4</rating>", 4) == 1.0  # exact, no format credit
    assert reward("nothing", 4) == -1.0
    assert reward(full(4), 4, format_reward=0.5, invalid=-2.0) == 1.5
    assert reward("nothing", 4, invalid=-2.0) == -2.0
    assert closeness(1, 5) == 0.0 and closeness(5, 5) == 1.0


@pytest.mark.parametrize("true", SCALE)
def test_the_truth_is_the_unique_best_answer(true):
    grid = np.round(np.arange(1, 5.0001, 0.25), 2)
    rewards = np.array([reward(full(p), true) for p in grid])
    assert grid[rewards.argmax()] == true and (rewards < rewards.max()).sum() == len(grid) - 1
    # closer is never worse: the reward falls monotonically away from the truth on both sides
    below, above = rewards[grid <= true], rewards[grid >= true]
    assert (np.diff(below) > 0).all() and (np.diff(above) < 0).all()


@pytest.mark.parametrize("bad", ["0", "6", "-1", "1e9", "-1e9", "NaN", "inf", "1e999", "", "four", "4/5", "3-4"])
@pytest.mark.parametrize("true", SCALE)
def test_out_of_range_and_non_numbers_earn_the_penalty_below_every_rated_answer(bad, true):
    worst_rated = min(reward(f"<rating>{p}</rating>", true) for p in SCALE)  # no format, furthest value
    assert reward(full(bad), true) == -1.0 < worst_rated
    assert reward(full(bad), true) < reward(f"<rating>{6 - true}</rating>", true)


@pytest.mark.parametrize("true", SCALE)
def test_missing_rating_and_hedging_earn_the_penalty(true):
    no_rating = full(4).split("<rating>")[0]
    hedged = full(4) + f"<rating>{true}</rating>"  # a second rating, hoping one of them hits
    assert reward(no_rating, true) == reward(hedged, true) == -1.0
    assert reward(hedged, true) < reward(full(4), true)


@pytest.mark.parametrize("pred,true", list(itertools.product(SCALE, SCALE)))
def test_the_same_rating_earns_more_with_the_three_steps(pred, true):
    with_steps = reward(full(pred), true)
    for without in (f"<rating>{pred}</rating>", "Sure! " + full(pred),
                    answer_text({**STEPS, "compatibility": " "}, pred)):
        assert reward(without, true) == with_steps - 1.0


def test_a_constant_answer_earns_no_more_than_a_model_that_knows():
    """On MovieLens-1M's rating distribution: always answering 4 (the mode and median) earns less in
    expectation than the truth, and less than a model that is right more often than not."""
    def expected(pred_of_true) -> float:
        return float(sum(share * reward(full(pred_of_true(y)), y) for y, share in zip(SCALE, ML1M)))

    constant = expected(lambda y: 4)
    knows = expected(lambda y: y)
    roughly = expected(lambda y: min(5, y + 1) if y <= 2 else y)  # wrong only on the rare low ratings
    assert knows == pytest.approx(2.0) and constant < roughly < knows
    assert all(expected(lambda y, c=c: c) <= constant + 1e-12 for c in np.arange(1, 5.01, 0.25))  # best constant


def test_a_constant_cannot_beat_item_knowledge_on_items_that_differ():
    """Two items, one loved (ratings 5, 5, 4) and one disliked (1, 2, 1): any single answer for both
    earns less than answering each item's median."""
    ratings = {"loved": [5, 5, 4], "disliked": [1, 2, 1]}
    per_item = sum(reward(full(int(np.median(v))), y) for v in ratings.values() for y in v)
    for c in np.arange(1, 5.01, 0.5):
        assert sum(reward(full(c), y) for v in ratings.values() for y in v) < per_item


def test_trl_adapter_scores_rows_and_logs_rates():
    logged = {}
    fn = RatingReward()
    out = fn(["p"] * 4, [full(4), "<rating>2</rating>", [{"role": "assistant", "content": full(5)}], "x"],
             true_rating=[4, 4, 5, 1], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [2.0, 0.5, 2.0, -1.0]
    assert logged == {"rating/rated_rate": 0.75, "rating/format_rate": 0.5, "rating/abs_error": pytest.approx(2 / 3)}
    assert fn.__name__ == "rating_reward"
