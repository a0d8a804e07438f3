"""The evaluation stage: score every ordering of the candidate lists and write the results table.

Rows: the pre-rank order, random orders (averaged over seeds), a popularity order, the oracle,
and the LambdaMART re-ranker (fitted on validation lists: the bar an LLM re-ranker must clear).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from gr2.data.splits import Split
from gr2.data.stage import load_items, load_split
from gr2.eval import baselines
from gr2.eval.config import EvalConfig
from gr2.eval.metrics import metric_keys, per_list_metrics
from gr2.eval.report import REFERENCE, markdown_table, summarise
from gr2.runs import RunDir, atomic_path, atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)


def load_lists(run: RunDir, split: str) -> pd.DataFrame:
    return pd.read_parquet(run.file("candidates", f"{split}.parquet"))


def baseline_orders(lists: pd.DataFrame, item_counts: np.ndarray, cfg: EvalConfig) -> dict[str, list[np.ndarray]]:
    """Each system's orders; several arrays for a system are averaged per list (random seeds)."""
    cands = np.stack(lists["candidates"].to_numpy())
    labels = np.stack(lists["labels"].to_numpy())
    n, k = cands.shape
    return {
        REFERENCE: [baselines.prerank_orders(n, k)],
        "random order": [baselines.random_orders(n, k, cfg.seed + s) for s in range(cfg.random_seeds)],
        "popularity order": [baselines.popularity_orders(cands, item_counts)],
        "oracle": [baselines.oracle_orders(labels)],
    }


def score_systems(lists: pd.DataFrame, systems: dict[str, list[np.ndarray]], cfg: EvalConfig) -> dict[str, dict[str, np.ndarray]]:
    labels = list(lists["labels"].to_numpy())
    out = {}
    for name, runs in systems.items():
        per_run = [per_list_metrics(list(orders), labels, cfg.recall_ks, cfg.ndcg_ks) for orders in runs]
        out[name] = {key: np.mean([r[key] for r in per_run], axis=0) for key in per_run[0]}
    return out


def lambdamart_orders(run: RunDir, split: Split, lists: pd.DataFrame, cfg: EvalConfig) -> np.ndarray:
    """Fit LambdaMART on the validation lists, re-rank ``lists``; model and importances saved."""
    from gr2.rerank import FeatureBuilder, LambdaMARTConfig, LambdaMARTReranker

    features = FeatureBuilder().fit(load_items(run), split.train)
    config = LambdaMARTConfig(**{"seed": cfg.seed, **cfg.lambdamart_params})
    model = LambdaMARTReranker(features, config).fit(load_lists(run, "val"))
    out = run.stage_dir("eval") / "lambdamart"
    with atomic_path(out / "model") as tmp:
        model.save(tmp)  # LightGBM text model, feature state, meta.json with the fit info
    atomic_write_json(out / "importances.json", model.feature_importances())
    return np.stack(model.rerank(lists))


def run_eval(run: RunDir, cfg: EvalConfig) -> dict:
    split = load_split(run)
    n_items = read_json(run.file("data", "stats.json"))["items"]
    lists = load_lists(run, cfg.split)
    if lists.empty:
        raise ValueError(f"{run.path}/candidates/{cfg.split}.parquet has no lists to evaluate")
    counts = baselines.train_item_counts(split.train, n_items)
    systems = baseline_orders(lists, counts, cfg)
    if cfg.lambdamart and cfg.split == "test":
        systems["LambdaMART (val-trained)"] = [lambdamart_orders(run, split, lists, cfg)]
    per_list = score_systems(lists, systems, cfg)
    keys = metric_keys(cfg.recall_ks, cfg.ndcg_ks)
    summary = summarise(per_list, keys, cfg.bootstrap, cfg.seed)
    results = {"split": cfg.split, "n_lists": len(lists), "systems": summary}
    out = run.stage_dir("eval")
    atomic_write_json(out / "results.json", results)
    table = markdown_table(summary, keys, len(lists), f"Re-ranking on {cfg.split} lists")
    atomic_write_text(out / "results.md", table)
    print(table)
    return {name: round(row["metrics"]["N@5"], 4) for name, row in summary.items()}
