"""The position prior (:class:`gr2.llm.scoring.PositionPrior`): estimated from where the true next
item sits in training lists, added by shown position, saved beside a model."""

from __future__ import annotations

import math

import pytest

from gr2.llm.scoring import PositionPrior, rank_by_scores


def test_estimate_is_the_smoothed_share_of_targets_at_each_position():
    labels = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]]
    prior = PositionPrior.estimate(labels, smoothing=1.0)
    # counts 3, 1, 0 plus 1 each over 4 + 3
    assert prior.log_prior == pytest.approx([math.log(4 / 7), math.log(2 / 7), math.log(1 / 7)])
    assert sum(math.exp(x) for x in prior.log_prior) == pytest.approx(1.0)


def test_estimate_takes_the_longest_list_and_rejects_none():
    prior = PositionPrior.estimate([[0, 1], [0, 0, 0, 1]], smoothing=0.5)
    assert len(prior.log_prior) == 4
    with pytest.raises(ValueError, match="no lists"):
        PositionPrior.estimate([])


def test_offsets_follow_the_shown_position_not_the_prerank_index():
    prior = PositionPrior([-1.0, -2.0, -3.0])
    assert prior.offsets([0, 1, 2]) == [-1.0, -2.0, -3.0]
    # pre-rank candidate 2 shown first, 0 second, 1 third
    assert prior.offsets([2, 0, 1]) == [-2.0, -3.0, -1.0]
    # a list longer than the estimate: the last position's prior
    assert prior.offsets([0, 1, 2, 3]) == [-1.0, -2.0, -3.0, -3.0]
    assert prior.add([0.5, 0.5, 0.5], [2, 0, 1]) == [-1.5, -2.5, -0.5]


def test_equal_model_scores_rank_in_the_order_shown():
    prior = PositionPrior.estimate([[1, 0, 0, 0]] * 3 + [[0, 1, 0, 0]] * 2 + [[0, 0, 1, 0]])
    assert rank_by_scores(prior.add([0.0] * 4, [0, 1, 2, 3])) == [0, 1, 2, 3]
    assert rank_by_scores(prior.add([0.0] * 4, [3, 1, 0, 2])) == [3, 1, 0, 2]


def test_save_and_load_round_trip(tmp_path):
    assert PositionPrior.load(tmp_path) is None
    PositionPrior([-0.5, -1.5]).save(tmp_path)
    assert PositionPrior.load(tmp_path) == PositionPrior([-0.5, -1.5])
