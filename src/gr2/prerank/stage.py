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
from pathlib import Path

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
    return [(u, s[:-3], s[-3]) for u, s in enumerate(split.sequences) if len(s) - 3 >= cfg.min_train_history]


def sample_lists(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` of the kept lists (seeded, order kept). Sampling after the target-in-list filter means
    ``n_train_examples`` is the number of training lists one actually gets."""
    if n is None or n >= len(df):
        return df
    keep = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[keep].reset_index(drop=True)


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


def fit_preranker(cfg: CandidatesConfig, name: str, train: list[list[int]], n_items: int,
                  valid: list[Example], run: RunDir):
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
    examples = split.examples(name)
    n = cfg.n_eval_examples
    if n is None or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(cfg.seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in keep]


def run_candidates(run: RunDir, cfg: CandidatesConfig) -> dict:
    split = load_split(run)
    stats = read_json(run.file("data", "stats.json"))
    n_items, max_history = stats["items"], stats.get("max_history", 50)
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

    # Honest training lists: this pre-ranker never saw the training lists' targets.
    train_examples = training_examples(split, cfg)
    honest, report["train_fit_seconds"] = fit_preranker(
        cfg, train_name, [s[:-3] for s in split.sequences], n_items, val_examples, run
    )
    df, quality = build_lists(honest, train_examples, "train", cfg, max_history)
    df = sample_lists(df, cfg.n_train_examples, cfg.seed)
    quality["kept"] = len(df)
    atomic_write_parquet(out / "train.parquet", df)
    report["splits"]["train"] = quality
    log.info("candidates train: %s", quality)
    atomic_write_json(out / "prerank.json", report)
    return {name: q for name, q in report["splits"].items()}
