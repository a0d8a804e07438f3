"""The candidates stage: fit the pre-ranker and write K-candidate lists for train, val and test.

Honesty rules (docs/method.md §2):

* val/test lists come from a pre-ranker fitted on the training split only, and never propose an
  item the user has already seen (``exclude_seen``);
* training lists (for SFT/RL) come from pre-rankers that never saw their targets, so no list is
  easier than a test list.

Training lists. Each user's training sequence ``t = Split.train[u]`` (``s[:-2]``: never a val or
test item) gives one list per position ``p`` (target ``t[p]``, history ``t[:p]``), the newest
``train_positions_per_user`` positions with at least ``min_train_history`` items before them.
A single pre-ranker for all of them would have to be fitted on each user's sequence cut before its
earliest listed position, which leaves little to learn from once several positions are listed
(Beauty: median 4 training items). Instead the pre-rankers are cross-fitted over users
(``train_folds`` = F): users with a list are split into F seeded folds, and fold f's lists come from
a pre-ranker fitted on the other folds' training sequences (and users without a list) and
early-stopped on their validation pairs only. It never saw any item of the users whose lists it
builds, so no list's target leaked; what it learned from other users, possibly later in time, the
val/test pre-ranker learns too. ``train_folds=1`` keeps the single pre-ranker fitted on every user's
training sequence cut before its first listed position (with one position: minus the last training
item, the previous behaviour): it has seen each user's history, as the val/test pre-ranker has, but
was never fitted on a list's target; its early stopping, as before, reads every user's validation
pair, whose history holds the targets (model selection only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.candidates.config import CandidatesConfig
from gr2.checks import ConfigError
from gr2.data.splits import Split
from gr2.data.stage import load_split
from gr2.lists import sample_indices, seeded_sample
from gr2.metrics.ranking import target_rank_metrics
from gr2.prerank import make_preranker
from gr2.prerank.base import Preranker, top_k
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet, read_json

log = logging.getLogger(__name__)

Example = tuple[int, list[int], int]
"""``(user_id, history oldest first, target)``; ``len(history)`` is the target's position in the
user's sequence."""
Fit = Callable[[list[list[int]], list[Example]], tuple[Preranker, float]]
"""Fits a pre-ranker on training sequences, early-stopped on validation examples; returns it and
the fit's seconds."""


def first_train_position(length: int, cfg: CandidatesConfig) -> int:
    """The earliest position of a training sequence of ``length`` items that gets a list (a
    sequence has none when this is ``>= length``)."""
    cap = cfg.train_positions_per_user
    return cfg.min_train_history if cap is None else max(cfg.min_train_history, length - cap)


def training_examples(split: Split, cfg: CandidatesConfig) -> list[Example]:
    """Every user's listed positions, newest first: target ``t[p]``, history ``t[:p]``."""
    return [(u, t[:p], t[p]) for u, t in enumerate(split.train)
            for p in range(len(t) - 1, first_train_position(len(t), cfg) - 1, -1)]


def user_folds(split: Split, cfg: CandidatesConfig) -> np.ndarray:
    """Fold of each user (seeded, balanced); ``-1`` for users without a training list, whose
    sequences every fold's pre-ranker may use."""
    listed = np.flatnonzero([first_train_position(len(t), cfg) < len(t) for t in split.train])
    folds = np.full(len(split.train), -1, dtype=np.int64)
    folds[np.random.default_rng(cfg.seed).permutation(listed)] = np.arange(len(listed)) % cfg.train_folds
    return folds


def fold_fit_data(split: Split, folds: np.ndarray, fold: int,
                  cfg: CandidatesConfig) -> tuple[list[list[int]], list[Example]]:
    """What the pre-ranker of ``fold``'s lists is fitted and early-stopped on: the other folds'
    training sequences and validation examples, or (``train_folds=1``) every user's training
    sequence cut before its first listed position and every validation example."""
    if cfg.train_folds == 1:
        return [t[:first_train_position(len(t), cfg)] for t in split.train], split.examples("val")
    others = folds != fold
    return ([t for t, keep in zip(split.train, others) if keep],
            [e for e in split.examples("val") if others[e[0]]])


def sample_lists(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` of the kept lists (seeded, order kept). Sampling after the target-in-list filter means
    ``n_train_examples`` is the number of training lists one actually gets."""
    if n is None or n >= len(df):
        return df
    return df.iloc[sample_indices(len(df), n, seed)].reset_index(drop=True)


def example_ids(name: str, examples: list[Example]) -> list[str]:
    """``{name}-{user}`` for val/test (one list per user), ``train-{user}-{position}`` for the
    training lists (several per user)."""
    if name == "train":
        return [f"train-{u}-{len(h)}" for u, h, _ in examples]
    return [f"{name}-{u}" for u, _, _ in examples]


def lists_frame(examples: list[Example], cands: np.ndarray, scores: np.ndarray, name: str,
                cfg: CandidatesConfig, max_history: int, folds: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """The lists of ``examples`` (``candidates/{name}.parquet`` rows; without ``keep_missed`` only
    those holding their target) and the pre-ranker's full-catalogue quality on all of them."""
    targets = np.array([t for _, _, t in examples], dtype=np.int64)
    hit = cands == targets[:, None]
    found = hit.any(axis=1)
    rank = np.where(found, hit.argmax(axis=1) + 1, 0)
    quality = {
        "lists": len(examples),
        **{key: round(v, 5) for key, v in target_rank_metrics(rank, [cfg.k]).items()},
        "kept": int(len(examples) if cfg.keep_missed else found.sum()),
    }
    df = pd.DataFrame(
        {
            "example_id": example_ids(name, examples),
            "user_id": np.array([u for u, _, _ in examples], dtype=np.int64),
            "history": [h[-max_history:] for _, h, _ in examples],
            "candidates": list(cands.astype(np.int64)),
            "scores": list(scores.astype(np.float64)),
            "labels": list(hit.astype(np.int64)),
            "target": targets,
            "split": name,
            "position": np.array([len(h) for _, h, _ in examples], dtype=np.int64),
            "fold": folds.astype(np.int64),
        }
    )
    if not cfg.keep_missed:
        df = df[found].reset_index(drop=True)
    return df, quality


def build_lists(preranker: Preranker, examples: list[Example], name: str, cfg: CandidatesConfig,
                max_history: int) -> tuple[pd.DataFrame, dict]:
    """Val/test lists of one pre-ranker (``fold`` -1) and its quality on them."""
    cands, scores = top_k(preranker, [h for _, h, _ in examples], k=cfg.k, exclude_seen=cfg.exclude_seen)
    return lists_frame(examples, cands, scores, name, cfg, max_history, np.full(len(examples), -1))


def build_training_lists(split: Split, cfg: CandidatesConfig, fit: Fit,
                         max_history: int) -> tuple[pd.DataFrame, dict, list[dict]]:
    """Training lists, each fold's from its own pre-ranker (module docstring), in
    :func:`training_examples` order; their quality; and per fold its users, lists and fit time."""
    examples = training_examples(split, cfg)
    folds = user_folds(split, cfg)
    fold_of = folds[np.array([u for u, _, _ in examples], dtype=np.int64)]
    cands = np.empty((len(examples), cfg.k), dtype=np.int64)
    scores = np.empty((len(examples), cfg.k), dtype=np.float32)
    per_fold = []
    for f in range(cfg.train_folds):
        rows = np.flatnonzero(fold_of == f)
        if not len(rows):
            continue
        preranker, seconds = fit(*fold_fit_data(split, folds, f, cfg))
        cands[rows], scores[rows] = top_k(preranker, [examples[i][1] for i in rows], k=cfg.k,
                                          exclude_seen=cfg.exclude_seen)
        per_fold.append({"fold": f, "users": int((folds == f).sum()), "lists": len(rows), "fit_seconds": seconds})
        log.info("candidates train fold %d: %d users, %d lists, fit %.1f s", f, per_fold[-1]["users"],
                 len(rows), seconds)
    df, quality = lists_frame(examples, cands, scores, "train", cfg, max_history, fold_of)
    return df, quality, per_fold


def fit_preranker(cfg: CandidatesConfig, name: str, train: list[list[int]], n_items: int,
                  valid: list[Example], run: RunDir) -> tuple[Preranker, float]:
    kwargs = dict(cfg.params.get(name, {}))
    if name == "sasrec":
        kwargs.setdefault("seed", cfg.seed)
    if name == "llm":  # the run's mid-trained model and SID table
        kwargs.setdefault("model_path", str(run.stage_dir("midtrain") / "model"))
        if not (run.path / "sid" / "sids.parquet").exists():
            raise FileNotFoundError(f"--prerank llm needs {run.path}/sid/sids.parquet: run `gr2 sid` first")
        if not Path(kwargs["model_path"], "config.json").exists():
            raise FileNotFoundError(f"--prerank llm needs a model at {kwargs['model_path']}: run `gr2 midtrain` "
                                    "first or set candidates.params.llm.model_path")
        kwargs.setdefault("sids", pd.read_parquet(run.file("sid", "sids.parquet")))
    pre = make_preranker(name, **kwargs)
    start = time.perf_counter()
    pre.fit(train, n_items, valid=[(h, t) for _, h, t in valid])
    return pre, round(time.perf_counter() - start, 2)


def eval_examples(split: Split, name: str, cfg: CandidatesConfig) -> list[Example]:
    """Val/test examples, or the same seeded sample of ``n_eval_examples`` users for both splits."""
    return seeded_sample(split.examples(name), cfg.n_eval_examples, cfg.seed)


def run_candidates(run: RunDir, cfg: CandidatesConfig) -> dict:
    split = load_split(run)
    stats = read_json(run.file("data", "stats.json"))
    n_items, max_history = stats["items"], stats.get("max_history", 50)
    if cfg.k > n_items:
        raise ConfigError(f"candidates: k={cfg.k} is more than the catalogue's {n_items} items "
                          f"({run.path / 'data' / 'stats.json'})")
    out = run.stage_dir("candidates")
    report: dict = {"prerank": cfg.prerank, "k": cfg.k, "exclude_seen": cfg.exclude_seen,
                    "keep_missed": cfg.keep_missed, "splits": {}}

    train_name = cfg.train_prerank or ("sasrec" if cfg.prerank == "llm" else cfg.prerank)
    report["train_prerank"] = train_name
    val_examples = split.examples("val")
    main, report["fit_seconds"] = fit_preranker(cfg, cfg.prerank, split.train, n_items, val_examples, run)
    for name in ("val", "test"):
        df, quality = build_lists(main, eval_examples(split, name, cfg), name, cfg, max_history)
        atomic_write_parquet(out / f"{name}.parquet", df)
        report["splits"][name] = quality
        log.info("candidates %s: %s", name, quality)

    def fit(train: list[list[int]], valid: list[Example]) -> tuple[Preranker, float]:
        return fit_preranker(cfg, train_name, train, n_items, valid, run)

    df, quality, per_fold = build_training_lists(split, cfg, fit, max_history)
    report["train_positions_per_user"] = cfg.train_positions_per_user
    report["train_folds"] = per_fold
    report["train_fit_seconds"] = round(sum(f["fit_seconds"] for f in per_fold), 2)
    df = sample_lists(df, cfg.n_train_examples, cfg.seed)
    quality["kept"] = len(df)
    atomic_write_parquet(out / "train.parquet", df)
    report["splits"]["train"] = quality
    log.info("candidates train: %s", quality)
    atomic_write_json(out / "prerank.json", report)
    return {name: q for name, q in report["splits"].items()}
