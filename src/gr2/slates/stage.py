"""The ``data`` and ``candidates`` stages of a slates run (``slates.path`` set; docs/slates.md).

``data`` reads the slates and items files and writes what every later stage expects in ``data/``
(``items.parquet``, ``interactions.parquet``, ``stats.json``) plus ``slates.parquet`` (the kept
slates with dense ids and their split). ``candidates`` turns those into
``candidates/{train,val,test}.parquet`` in the candidates stage's schema (docs/artifacts.md) with
graded ``labels`` and writes ``candidates/slates.json``.

Honesty of ``data/interactions.parquet``. The sid, midtrain, evidence-teacher and eval stages learn
item statistics from it (through :func:`gr2.data.stage.load_split`), for every split's users. So a
user's sequence is the history of their **earliest** request only: a later request's history can
hold the clicks of an earlier one, which may be a validation or test slate. The split is by user
(all requests of a user in one split), so no user's training slates see the future of their own
test slates. The leave-one-out readers drop the last one to three items of each sequence; with
slates those items are not targets, only a little less statistics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.data.loaders import read_items_file
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet
from gr2.slates.config import SlatesConfig
from gr2.slates.format import (
    DROP_REASONS,
    GRADES,
    SPLITS,
    SlateFormatError,
    load_slates,
)

log = logging.getLogger(__name__)

__all__ = ["assign_splits", "candidate_lists", "run_slates_candidates", "run_slates_data"]


def assign_splits(slates: pd.DataFrame, cfg: SlatesConfig, source: str) -> pd.Series:
    """The file's ``split`` column when it has one, else a seeded split of users (every request of
    a user in the same split). Raises unless each split gets at least one slate."""
    given = slates["split"].notna()
    if given.any() and not given.all():
        raise SlateFormatError(f"{source}: split is given for {int(given.sum())} of {len(slates)} kept rows; "
                               "give it for every row or for none")
    if given.all():
        split = slates["split"].astype(str)
    else:
        users = np.unique(slates["user_id"].to_numpy(str))
        n_test = max(1, round(cfg.test_fraction * len(users)))
        n_val = max(1, round(cfg.val_fraction * len(users)))
        if n_test + n_val >= len(users):
            raise SlateFormatError(f"{source}: {len(users)} users cannot be split into train, val and test "
                                   f"(val_fraction {cfg.val_fraction}, test_fraction {cfg.test_fraction})")
        shuffled = np.random.default_rng(cfg.seed).permutation(users)
        of_user = {u: "test" for u in shuffled[:n_test]}
        of_user.update({u: "val" for u in shuffled[n_test:n_test + n_val]})
        split = slates["user_id"].map(lambda u: of_user.get(u, "train"))
    empty = [s for s in SPLITS if not (split == s).any()]
    if empty:
        raise SlateFormatError(f"{source}: no kept slate in split(s) {empty}; every split needs at least one")
    return split


def _interactions(slates: pd.DataFrame) -> pd.DataFrame:
    """Per user, the history of their earliest request (request ``timestamp``, then file order)."""
    order = slates.assign(_row=np.arange(len(slates))).sort_values(["user_id", "timestamp", "_row"],
                                                                   kind="stable", na_position="last")
    first = order.drop_duplicates("user_id", keep="first").sort_values("user_id", kind="stable")
    rows = [(u, i, p, t, raw) for u, raw, hist, times in zip(first["user_id"], first["raw_user_id"], first["history"],
                                                              first["history_timestamps"])
            for p, (i, t) in enumerate(zip(hist, times))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "position", "timestamp", "raw_user_id"])
    return df.astype({"user_id": np.int64, "item_id": np.int64, "position": np.int64, "timestamp": np.float64})


def run_slates_data(run: RunDir, cfg: SlatesConfig) -> dict:
    """Check the slates and items files and write ``data/`` (see the module doc)."""
    items_raw = read_items_file(Path(cfg.items))
    slates, counts = load_slates(cfg.path, items_raw, cfg.items)
    slates["split"] = assign_splits(slates, cfg, str(cfg.path)).to_numpy()

    used = {i for col in ("history", "candidates") for ids in slates[col] for i in ids}
    items = items_raw[items_raw["raw_id"].isin(used)].reset_index(drop=True)
    items.insert(0, "item_id", np.arange(len(items), dtype=np.int64))
    index = dict(zip(items["raw_id"], items["item_id"]))
    codes, users = pd.factorize(slates["user_id"], sort=False)
    dense = pd.DataFrame({
        "request_id": slates["request_id"].astype(str),
        "user_id": codes.astype(np.int64),
        "raw_user_id": slates["user_id"].astype(str),
        "timestamp": slates["timestamp"].astype(np.float64),
        "history": [[index[i] for i in h] for h in slates["history"]],
        "history_timestamps": [list(map(float, t)) for t in slates["history_timestamps"]],
        "candidates": [[index[i] for i in c] for c in slates["candidates"]],
        "labels": [list(map(int, g)) for g in slates["labels"]],
        "scores": [list(map(float, s)) for s in slates["scores"]],
        "split": slates["split"],
    })
    interactions = _interactions(dense)
    lengths = interactions.groupby("user_id").size()
    stats = {
        "dataset": f"slates:{Path(cfg.path).name}",
        "users": int(len(users)),
        "items": int(len(items)),
        "interactions": int(len(interactions)),
        "avg_history_len": round(float(lengths.mean()), 4),
        "max_history": cfg.max_history,
        "slates": {"k": counts["k"], **{s: int((dense["split"] == s).sum()) for s in SPLITS}},
        "filtering": {"slate_rows": counts["rows"], **{f"dropped_{r}": counts[r] for r in DROP_REASONS},
                      "kept_slates": counts["kept"], "removed_items_unused": len(items_raw) - len(items)},
    }
    out = run.stage_dir("data")
    atomic_write_parquet(out / "items.parquet", items)
    atomic_write_parquet(out / "interactions.parquet", interactions)
    atomic_write_parquet(out / "slates.parquet", dense)
    atomic_write_json(out / "stats.json", stats)
    log.info("slates: %d of %d rows kept (K=%d; %s), %d users, %d items", counts["kept"], counts["rows"],
             counts["k"], stats["slates"], stats["users"], stats["items"])
    return {"slates": counts["kept"], "dropped": counts["rows"] - counts["kept"], **stats["slates"],
            "users": stats["users"], "items": stats["items"]}


def candidate_lists(slates: pd.DataFrame, split: str, max_history: int) -> pd.DataFrame:
    """The ``split`` slates in the candidates stage's schema. ``target`` is the first candidate (in
    production order) with the slate's highest label: the item single-target readers (trace
    prompts, targeted sampling) name; metrics and rewards read the graded ``labels``."""
    part = slates[slates["split"] == split]
    labels = [np.asarray(g, dtype=np.int64) for g in part["labels"]]
    return pd.DataFrame({
        "example_id": [f"{split}-{r}" for r in part["request_id"]],
        "user_id": part["user_id"].to_numpy(np.int64),
        "history": [np.asarray(h, dtype=np.int64)[-max_history:] for h in part["history"]],
        "candidates": [np.asarray(c, dtype=np.int64) for c in part["candidates"]],
        "scores": [np.asarray(s, dtype=np.float64) for s in part["scores"]],
        "labels": labels,
        "target": np.array([int(c[int(np.argmax(g))]) for c, g in zip(part["candidates"], labels)], dtype=np.int64),
        "split": split,
    })


def _describe(lists: pd.DataFrame) -> dict:
    labels = np.stack(lists["labels"].to_numpy())
    return {
        "lists": len(lists),
        "positives_per_list": round(float((labels > 0).sum(axis=1).mean()), 4),
        "labels": {str(g): int((labels == g).sum()) for g in GRADES},
        # how often production already put a top-grade item first (the pre-rank order's top-1)
        "production_top1_best": round(float((labels[:, 0] == labels.max(axis=1)).mean()), 4),
    }


def run_slates_candidates(run: RunDir, cfg: SlatesConfig) -> dict:
    """Write ``candidates/{train,val,test}.parquet`` from ``data/slates.parquet`` (no pre-ranker)."""
    slates = pd.read_parquet(run.file("data", "slates.parquet"))
    out = run.stage_dir("candidates")
    report: dict = {"source": "slates", "path": cfg.path, "k": len(slates["candidates"].iloc[0]), "splits": {}}
    for split in SPLITS:
        lists = candidate_lists(slates, split, cfg.max_history)
        atomic_write_parquet(out / f"{split}.parquet", lists)
        report["splits"][split] = _describe(lists)
    atomic_write_json(out / "slates.json", report)
    log.info("candidates from slates: %s", report["splits"])
    return {s: d["lists"] for s, d in report["splits"].items()}
