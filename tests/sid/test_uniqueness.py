import numpy as np
import pytest

from gr2.sid.uniqueness import check_unique, draw_random_levels, resolve_collisions


def _prefix_free(sids):
    s = set(sids)
    return not any(t[:k] in s for t in sids for k in range(1, len(t)))


def test_unique_input_is_unchanged():
    codes = np.array([[0, 1, 2], [0, 1, 3], [1, 1, 2]])
    out, info = resolve_collisions(codes, 4)
    assert out == [(0, 1, 2), (0, 1, 3), (1, 1, 2)]
    assert info.kept == 3 and info.reassigned == 0 and info.extended == 0


def test_collision_moves_the_farther_item_to_its_nearest_free_code():
    codes = np.array([[0, 1], [0, 1], [0, 3]])
    cost = np.array([[0.0, 0.0, 0.0, 0.0],  # item 0: costs per last-level code
                     [5.0, 0.5, 0.2, 9.0],  # item 1 is farther from code 1 than item 0 ... (0.5 > 0.0)
                     [0.0, 0.0, 0.0, 0.0]])
    out, info = resolve_collisions(codes, 4, cost_fn=lambda idx: cost[idx])
    assert out[0] == (0, 1) and out[2] == (0, 3)
    assert out[1] == (0, 2)  # nearest free code of the bucket (3 is taken, 2 beats 0)
    assert info.reassigned == 1 and info.extended == 0


def test_without_cost_the_smallest_free_code_is_taken():
    out, _ = resolve_collisions(np.array([[2, 1], [2, 1], [2, 1]]), 4)
    assert out == [(2, 1), (2, 0), (2, 2)]


def test_full_bucket_adds_a_level_only_there():
    # bucket (0,) holds 6 items for 4 codes: must grow; bucket (1,) holds 2 colliding items: no.
    codes = np.array([[0, 0]] * 3 + [[0, 1]] * 2 + [[0, 2]] + [[1, 3]] * 2)
    out, info = resolve_collisions(codes, 4)
    check_unique(out)
    assert _prefix_free(out)
    assert {len(s) for s in out[6:]} == {2}  # the other bucket is just re-assigned
    assert max(len(s) for s in out[:6]) == 3
    assert info.extended > 0 and info.full_buckets >= 1
    assert all(s[0] == c[0] for s, c in zip(out, codes.tolist()))  # prefixes never change


def test_huge_collision_needs_several_extra_levels():
    codes = np.zeros((40, 2), dtype=int)
    out, info = resolve_collisions(codes, 3)
    check_unique(out)
    assert _prefix_free(out)
    assert info.max_length >= 4  # 40 items > 3 * 3 = 9 per one extra level


def test_resolution_is_deterministic_and_independent_of_call():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(200, 3))
    a, _ = resolve_collisions(codes, 4)
    b, _ = resolve_collisions(codes.copy(), 4)
    assert a == b
    check_unique(a)


def test_cold_start_never_changes_existing_and_stays_unique():
    rng = np.random.default_rng(1)
    existing, _ = resolve_collisions(rng.integers(0, 3, size=(60, 3)), 4)
    frozen = list(existing)
    new = rng.integers(0, 3, size=(50, 3))
    out, info = resolve_collisions(new, 4, existing=existing)
    assert existing == frozen
    check_unique(existing + out)
    assert all(o[:2] == tuple(c[:2]) for o, c in zip(out, new.tolist()))
    # a second batch against both
    out2, _ = resolve_collisions(new, 4, existing=existing + out)
    check_unique(existing + out + out2)


def test_cold_start_item_identical_to_an_existing_one_moves():
    existing = [(0, 0, 1)]
    out, _ = resolve_collisions(np.array([[0, 0, 1]]), 4, existing=existing)
    assert out[0] != (0, 0, 1) and out[0][:2] == (0, 0)


def test_random_last_level_draws_codes_unused_within_the_prefix():
    rng = np.random.default_rng(0)
    prefix = rng.integers(0, 4, size=(300, 2))  # 16 buckets of ~19 items, C = 32
    last = draw_random_levels(prefix, 1, 32, seed=0)
    full = np.concatenate([prefix, last], axis=1)
    assert len({tuple(r) for r in full.tolist()}) == 300  # all distinct: unused codes only
    assert np.array_equal(last, draw_random_levels(prefix, 1, 32, seed=0))  # seeded
    assert not np.array_equal(last, draw_random_levels(prefix, 1, 32, seed=1))


def test_random_levels_are_balanced_when_a_bucket_overflows():
    last = draw_random_levels(np.zeros((10, 1), dtype=int), 1, 4, seed=0)[:, 0]
    assert sorted(np.bincount(last, minlength=4)) == [2, 2, 3, 3]


def test_two_random_levels_and_existing_occupancy():
    prefix = np.zeros((5, 1), dtype=int)
    existing = [(0, c, d) for c in range(4) for d in range(4) if (c, d) != (2, 3)]
    drawn = draw_random_levels(prefix, 2, 4, seed=0, existing=existing)
    assert drawn.shape == (5, 2)
    # every code of level 1 is taken under (0,), so level 1 is drawn balanced; at level 2 the
    # only code free under (0, 2) is 3: the first item drawn under (0, 2) must take it
    fulls = [(0, *r) for r in drawn.tolist()]
    under2 = [f for f in fulls if f[1] == 2]
    assert sorted(np.bincount(drawn[:, 0], minlength=4)) == [1, 1, 1, 2]
    if under2:
        assert (0, 2, 3) in under2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_then_resolve_is_unique_with_large_buckets(seed):
    rng = np.random.default_rng(seed)
    prefix = rng.integers(0, 2, size=(500, 2))  # 4 buckets of ~125 items, C = 16: overflow
    raw = np.concatenate([prefix, draw_random_levels(prefix, 1, 16, seed)], axis=1)
    out, info = resolve_collisions(raw, 16)
    check_unique(out)
    assert _prefix_free(out)
    assert info.extended > 0


def test_bad_codes_rejected():
    with pytest.raises(ValueError):
        resolve_collisions(np.array([[0, 5]]), 4)
    with pytest.raises(ValueError):
        resolve_collisions(np.array([1, 2]), 4)
