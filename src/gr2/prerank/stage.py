"""The candidates stage: fit the pre-ranker and write K-candidate lists for train, val and test.

Honesty rules (method.md §2):

* val/test lists come from a pre-ranker fitted on the training split only, and never propose an
  item the user has already seen (``exclude_seen``);
* training lists come from a second pre-ranker fitted on the training split minus each user's
  last training item, which is the training list's target, so no list is easier than a test list.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from gr2.data.splits import Split
from gr2.data.stage import load_split
from gr2.prerank import make_preranker
from gr2.prerank.base import top_k
from gr2.prerank.config import CandidatesConfig
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet, read_json

log = logging.getLogger(__name__)

Example = tuple[int, list[int], int]  # (user_id, history oldest first, target)


def training_examples(split: Split, cfg: CandidatesConfig) -> list[Example]:
    """One example per user: target = last training item, history = the items before it."""
    examples = [
        (u, s[:-3], s[-3]) for u, s in enumerate(split.sequences) if len(s) - 3 >= cfg.min_train_history
    ]
    if cfg.n_train_examples is not None and cfg.n_train_examples < len(examples):
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(examples), size=cfg.n_train_examples, replace=False))
        examples = [examples[i] for i in keep]
    return examples


def build_lists(
    preranker, examples: list[Example], name: str, cfg: CandidatesConfig, max_history: int
) -> tuple[pd.DataFrame, dict]:
    """Candidate lists for ``examples`` and the pre-ranker's own full-catalogue quality on them."""
    histories = [h for _, h, _ in examples]
    targets = np.array([t for _, _, t in examples], dtype=np.int64)
    cands, scores = top_k(preranker, histories, k=cfg.k, exclude_seen=cfg.exclude_seen)
    hit = cands == targets[:, None]
    found = hit.any(axis=1)
    rank = np.where(found, hit.argmax(axis=1) + 1, 0)
    ndcg = np.where(found, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0)
    quality = {
        "lists": len(examples),
        f"R@{cfg.k}": round(float(found.mean()), 5),
        f"N@{cfg.k}": round(float(ndcg.mean()), 5),
        "kept": int(len(examples) if cfg.keep_missed else found.sum()),
    }
    df = pd.DataFrame(
        {
            "example_id": [f"{name}-{u}" for u, _, _ in examples],
            "user_id": np.array([u for u, _, _ in examples], dtype=np.int64),
            "history": [h[-max_history:] for h in histories],
            "candidates": list(cands.astype(np.int64)),
            "scores": list(scores.astype(np.float64)),
            "labels": list(hit.astype(np.int64)),
            "target": targets,
            "split": name,
        }
    )
    if not cfg.keep_missed:
        df = df[found].reset_index(drop=True)
    return df, quality


def fit_preranker(cfg: CandidatesConfig, train: list[list[int]], n_items: int, valid: list[Example]):
    kwargs = dict(cfg.params.get(cfg.prerank, {}))
    if cfg.prerank == "sasrec":
        kwargs.setdefault("seed", cfg.seed)
    pre = make_preranker(cfg.prerank, **kwargs)
    start = time.perf_counter()
    pre.fit(train, n_items, valid=[(h, t) for _, h, t in valid])
    return pre, round(time.perf_counter() - start, 2)


def run_candidates(run: RunDir, cfg: CandidatesConfig) -> dict:
    split = load_split(run)
    stats = read_json(run.file("data", "stats.json"))
    n_items, max_history = stats["items"], stats.get("max_history", 50)
    out = run.stage_dir("candidates")
    report: dict = {"prerank": cfg.prerank, "k": cfg.k, "exclude_seen": cfg.exclude_seen,
                    "keep_missed": cfg.keep_missed, "splits": {}}

    val_examples = split.examples("val")
    main, report["fit_seconds"] = fit_preranker(cfg, split.train, n_items, val_examples)
    for name in ("val", "test"):
        df, quality = build_lists(main, split.examples(name), name, cfg, max_history)
        atomic_write_parquet(out / f"{name}.parquet", df)
        report["splits"][name] = quality
        log.info("candidates %s: %s", name, quality)

    # Honest training lists: this pre-ranker never saw the training lists' targets.
    train_examples = training_examples(split, cfg)
    honest, report["train_fit_seconds"] = fit_preranker(
        cfg, [s[:-3] for s in split.sequences], n_items, val_examples
    )
    df, quality = build_lists(honest, train_examples, "train", cfg, max_history)
    atomic_write_parquet(out / "train.parquet", df)
    report["splits"]["train"] = quality
    log.info("candidates train: %s", quality)
    atomic_write_json(out / "prerank.json", report)
    return {name: q for name, q in report["splits"].items()}
