"""The one seeded subset (:func:`gr2.lists.sample_indices`, :func:`gr2.lists.seeded_sample`): the same
draw the stages always made, so a seed keeps its sample."""

from __future__ import annotations

import numpy as np

from gr2.lists import sample_indices, seeded_sample


def test_the_draw_is_numpys_sorted_choice_without_replacement():
    assert sample_indices(10, 4, seed=0).tolist() == [2, 4, 5, 7]
    assert sample_indices(10, 4, seed=1).tolist() == [3, 4, 6, 9]
    for count in range(12):
        for n in (1, 3, count - 1):
            for seed in range(4):
                if 0 < n < count:
                    drawn = np.sort(np.random.default_rng(seed).choice(count, size=n, replace=False))
                    assert sample_indices(count, n, seed).tolist() == drawn.tolist()


def test_all_items_in_order_without_a_cap_or_with_a_large_one():
    items = list("abcdef")
    assert seeded_sample(items, None, 0) == items == seeded_sample(items, 6, 0) == seeded_sample(items, 60, 3)
    assert seeded_sample([], 5, 0) == [] and sample_indices(0, None, 0).tolist() == []


def test_a_sample_keeps_the_items_order():
    items = [f"x{i}" for i in range(50)]
    picked = seeded_sample(items, 7, seed=3)
    assert len(picked) == len(set(picked)) == 7 and picked == sorted(picked, key=items.index)
    assert picked == seeded_sample(tuple(items), 7, seed=3) and picked != seeded_sample(items, 7, seed=4)
