"""Training lists (gr2.candidates.stage): several positions per user, and pre-rankers cross-fitted over
user folds so that no list's pre-ranker saw its user's items (its target above all)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gr2.candidates.config import CandidatesConfig
from gr2.candidates.stage import (
    Example,
    build_training_lists,
    training_examples,
    user_folds,
)
from gr2.config import load_config
from gr2.data.splits import Split
from gr2.pipeline import run_pipeline
from gr2.prerank.base import Preranker

TINY = ["data.k_core=2", "candidates.prerank=cooc"]


def disjoint_split(lengths: list[int]) -> Split:
    """User u's items are its own (no item shared between users), so an item names its user."""
    sequences, nxt = [], 0
    for n in lengths:
        sequences.append(list(range(nxt, nxt + n)))
        nxt += n
    return Split(sequences)


class Spy(Preranker):
    """Records what it was fitted on and which histories it scored; scores by fit popularity."""

    def __init__(self) -> None:
        self.fitted: list[list[int]] = []
        self.valid: list[tuple[list[int], int]] = []
        self.scored: set[tuple[int, ...]] = set()

    def fit(self, train_sequences, n_items, valid=None) -> None:
        self.fitted, self.valid, self.n_items = [list(s) for s in train_sequences], list(valid or []), n_items

    def score(self, histories) -> np.ndarray:
        self.scored.update(tuple(h) for h in histories)
        pop = np.bincount([i for s in self.fitted for i in s], minlength=self.n_items).astype(np.float32)
        return np.tile(pop, (len(histories), 1))

    def items_seen(self) -> set[int]:
        return {i for s in self.fitted for i in s} | {i for h, t in self.valid for i in (*h, t)}


def spy_fit(spies: list[Spy], n_items: int):
    def fit(train: list[list[int]], valid: list[Example]) -> tuple[Preranker, float]:
        spies.append(Spy())
        spies[-1].fit(train, n_items, [(h, t) for _, h, t in valid])
        return spies[-1], 0.0
    return fit


def test_positions_are_the_newest_of_each_training_sequence():
    split = disjoint_split([3, 5, 9, 12])  # training sequences of 1, 3, 7 and 10 items
    cfg = CandidatesConfig(train_positions_per_user=3, min_train_history=2)
    got = [(u, len(h), t) for u, h, t in training_examples(split, cfg)]
    train = split.train
    assert got == [(1, 2, train[1][2]),
                   (2, 6, train[2][6]), (2, 5, train[2][5]), (2, 4, train[2][4]),
                   (3, 9, train[3][9]), (3, 8, train[3][8]), (3, 7, train[3][7])]
    assert all(h == train[u][:len(h)] for u, h, _ in training_examples(split, cfg))
    every = training_examples(split, CandidatesConfig(train_positions_per_user=None, min_train_history=2))
    assert len(every) == 0 + 1 + 5 + 8


def test_one_position_is_the_last_training_item():
    """``train_positions_per_user=1``: the single list per user of earlier versions."""
    split = disjoint_split([3, 4, 6, 8])
    old = [(u, s[:-3], s[-3]) for u, s in enumerate(split.sequences) if len(s) - 3 >= 1]
    assert training_examples(split, CandidatesConfig(train_positions_per_user=1)) == old


def test_user_folds_are_seeded_balanced_and_skip_users_without_lists():
    split = disjoint_split([3, *[6] * 10])  # user 0: one training item, no list
    cfg = CandidatesConfig(train_folds=3, seed=5)
    folds = user_folds(split, cfg)
    assert folds[0] == -1 and sorted(np.bincount(folds[1:])) == [3, 3, 4]
    assert np.array_equal(folds, user_folds(split, cfg))
    assert not np.array_equal(folds, user_folds(split, CandidatesConfig(train_folds=3, seed=6)))


@pytest.mark.parametrize("folds, cap", [(2, None), (3, 2), (1, 2), (1, None)])
def test_no_list_comes_from_a_preranker_that_saw_its_target(folds: int, cap: int | None):
    """Each list is scored by exactly one spy, never fitted on the list's target or a later item of
    its user; with cross-fitting that spy saw no item of the user at all, in its fit sequences or in
    its early-stopping pairs (``train_folds=1`` early-stops on every user's validation pair, as
    before). Items are disjoint between users, so an item seen is an item of that user."""
    split = disjoint_split([3, 4, 5, 7, 9, 12, 4, 6, 8, 10])
    n_items = sum(map(len, split.sequences))
    cfg = CandidatesConfig(k=3, keep_missed=True, train_folds=folds, train_positions_per_user=cap)
    spies: list[Spy] = []
    df, quality, per_fold = build_training_lists(split, cfg, spy_fit(spies, n_items), max_history=50)

    assert len(spies) == folds == len(per_fold) and quality["lists"] == len(df) > 0
    for row in df.itertuples():
        user_items = split.sequences[row.user_id]
        (spy,) = [s for s in spies if tuple(row.history) in s.scored]
        fitted = {i for seq in spy.fitted for i in seq}
        assert not fitted & set(user_items[row.position:]), f"{row.example_id}: fitted on its target"
        if folds > 1:
            assert not spy.items_seen() & set(user_items), f"{row.example_id}: its pre-ranker saw the user"
            assert spy is spies[row.fold]
    held_out = {i for s in split.sequences for i in s[-2:]}
    assert not held_out & {i for s in spies for seq in s.fitted for i in seq}, "fitted on a val/test item"


def test_cross_fitting_uses_every_other_users_training_sequence():
    split = disjoint_split([3, 4, 5, 7, 9, 12])
    cfg = CandidatesConfig(k=3, keep_missed=True, train_folds=2)
    spies: list[Spy] = []
    build_training_lists(split, cfg, spy_fit(spies, 40), max_history=50)
    folds = user_folds(split, cfg)
    for f, spy in enumerate(spies):
        assert spy.fitted == [t for u, t in enumerate(split.train) if folds[u] != f]
        assert [t for _, t in spy.valid] == [s[-2] for u, s in enumerate(split.sequences) if folds[u] != f]


def test_stage_writes_several_lists_per_user(generic_dir: Path, tmp_path: Path):
    cfg = load_config(None, [*TINY, "candidates.keep_missed=true", "candidates.train_positions_per_user=3",
                             "candidates.train_folds=2"], base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg, stages=["data", "candidates"])
    train, val, test = (pd.read_parquet(run.path / f"candidates/{s}.parquet") for s in ("train", "val", "test"))
    assert train["example_id"].is_unique and len(train) == 3 * train["user_id"].nunique()
    assert list(train["example_id"]) == [f"train-{u}-{p}" for u, p in zip(train["user_id"], train["position"])]
    assert train.groupby("user_id")["position"].apply(list).map(lambda ps: ps == [4, 3, 2]).all()
    assert set(train["fold"]) == {0, 1} and (train.groupby("user_id")["fold"].nunique() == 1).all()
    assert list(val["example_id"]) == [f"val-{u}" for u in val["user_id"]] and set(val["fold"]) == {-1}
    assert (val["position"] == 5).all() and (test["position"] == 6).all()
    report = json.loads((run.path / "candidates/prerank.json").read_text())
    assert [f["fold"] for f in report["train_folds"]] == [0, 1]
    assert sum(f["lists"] for f in report["train_folds"]) == report["splits"]["train"]["lists"] == len(train)
    assert report["train_positions_per_user"] == 3


@pytest.mark.parametrize("field, value", [("train_folds", 0), ("train_positions_per_user", 0)])
def test_config_rejects_nonsense(field: str, value: int):
    with pytest.raises(ValueError, match=field):
        CandidatesConfig(**{field: value})
