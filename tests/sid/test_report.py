import numpy as np
import pytest

from gr2.sid.report import extra_level_count, level_stats, uniqueness_stats


def test_uniqueness_stats_counts_collisions_and_buckets():
    sids = [(0, 0, 1), (0, 0, 1), (0, 0, 2), (1, 0, 0), (0, 0, 1)]
    s = uniqueness_stats(sids)
    assert s["items"] == 5 and s["distinct"] == 3
    assert s["uniqueness"] == pytest.approx(2 / 5)  # items whose tuple nobody else has
    assert s["distinct_ratio"] == pytest.approx(3 / 5)
    assert s["collisions"] == 2
    assert s["largest_bucket"] == 3
    assert s["largest_prefix_bucket"] == 4
    assert uniqueness_stats(np.array([[1, 2], [1, 3]]))["uniqueness"] == 1.0


def test_level_stats_perplexity():
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    a, b = level_stats(codes, 4)
    assert a["codes_used"] == 4 and a["perplexity"] == pytest.approx(4.0)
    assert b["codes_used"] == 1 and b["perplexity"] == pytest.approx(1.0) and b["max_share"] == 1.0


def test_extra_level_count():
    assert extra_level_count([(1, 2), (1, 3, 0), (1, 3, 1), (2, 2, 2, 2)], 2) == {3: 2, 4: 1}
