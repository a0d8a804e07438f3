"""The evaluation stage: score every ordering of the candidate lists and write the results table.

Rows: the pre-rank order, random orders (averaged over seeds), a popularity order, the oracle,
the LambdaMART re-ranker (fitted on validation lists: the bar an LLM re-ranker must clear), every
LLM system saved under ``eval/systems/`` for the split (:mod:`gr2.eval.llm_rows`, :mod:`gr2.eval.systems`)
and the fusion row,
LambdaMART with an LLM's scores as features (:mod:`gr2.eval.fusion`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gr2.data.splits import Split
from gr2.data.stage import load_items, load_split
from gr2.eval import baselines, fusion
from gr2.eval.config import EvalConfig
from gr2.eval.lambdamart import fit_lambdamart
from gr2.eval.llm_rows import llm_rows
from gr2.eval.report import REFERENCE, markdown_table, summarise
from gr2.eval.systems import load_systems
from gr2.lists import load_lists
from gr2.metrics.ranking import metric_keys, per_list_metrics
from gr2.runs import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    read_json,
)

log = logging.getLogger(__name__)


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


def lambdamart_rows(run: RunDir, split: Split, lists: pd.DataFrame, cfg: EvalConfig
                    ) -> tuple[np.ndarray, fusion.SampledRows, list[str]]:
    """The LambdaMART row's orders of ``lists`` (fitted on every validation list), and the fusion row
    with the LambdaMART row on the LLM's lists, with its note (:func:`gr2.eval.fusion.fusion_rows`;
    empty without a fusion row)."""
    from gr2.rerank import FeatureBuilder

    features = FeatureBuilder().fit(load_items(run), split.train)
    val_lists = load_lists(run, "val")
    plain = np.stack(fit_lambdamart(run, features, val_lists, cfg, "lambdamart").rerank(lists))
    if not fusion.enabled(cfg):
        return plain, {}, []
    return plain, *fusion.fusion_rows(run, lists, val_lists, features, plain, cfg)


def run_eval(run: RunDir, cfg: EvalConfig, llm_rows_too: bool = True) -> dict:
    """The results table. ``llm_rows_too=False`` only re-renders it with the LLM systems already saved
    in ``eval/systems/`` (what ``gr2 eval rerank`` needs after adding one row: no model is re-run)."""
    split = load_split(run)
    n_items = read_json(run.file("data", "stats.json"))["items"]
    lists = load_lists(run, cfg.split)
    if lists.empty:
        raise ValueError(f"{run.path}/candidates/{cfg.split}.parquet has no lists to evaluate")
    counts = baselines.train_item_counts(split.train, n_items)
    systems = baseline_orders(lists, counts, cfg)
    fresh = llm_rows(run, cfg) if llm_rows_too else []  # first: the fusion row reads the LLM's scores
    sampled: fusion.SampledRows = {}
    notes: list[str] = []
    if cfg.lambdamart and cfg.split == "test":
        plain, sampled, notes = lambdamart_rows(run, split, lists, cfg)
        systems["LambdaMART (val-trained)"] = [plain]
    return write_results(run, lists, systems, cfg, sampled, notes, fresh)


def saved_orders(saved: list[dict], lists: pd.DataFrame, taken: set[str]
                 ) -> tuple[dict[str, list[np.ndarray]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Orders of saved systems (:func:`gr2.eval.systems.load_systems`) aligned with ``lists`` by
    example_id: ``(full, partial)``, ``full[name] = [orders]`` for systems covering every list,
    ``partial[name] = (row positions, orders)`` for the others. Systems named like a row in ``taken``,
    and ids that are not in ``lists`` (a system scored on other lists), are skipped with a warning."""
    row_of = {str(e): i for i, e in enumerate(lists["example_id"])}
    full: dict[str, list[np.ndarray]] = {}
    partial: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for system in saved:
        name = system["name"]
        known = {e: o for e, o in system["orders"].items() if e in row_of}
        if name in taken or not known:
            log.warning("eval: saved system %r skipped (%s)", name,
                        "its name is taken" if name in taken else "none of its lists is in this table")
            continue
        if len(known) < len(system["orders"]):
            log.warning("eval: %d lists of %r are not in this table", len(system["orders"]) - len(known), name)
        rows = np.array(sorted(row_of[e] for e in known))
        by_row = {row_of[e]: o for e, o in known.items()}
        orders = np.array([by_row[r] for r in rows])
        if len(rows) == len(lists):
            full[name] = [orders]
        else:
            partial[name] = (rows, orders)
    return full, partial


def llm_note(system: dict) -> str:
    """One line on how an LLM row was made: mode, valid rate, input-order copies."""
    summ = system["summary"]
    copies = summ.get("identity_rate_prerank")
    copy_text = "n/a" if copies is None else f"{copies:.1%}"
    head = f"- {system['name']}: `{system['model']}` on {system['n_lists']} lists; "
    if system.get("mode") == "direct":
        return head + (f"direct scoring (no text generated; always a valid ranking); {copy_text} of its "
                       "rankings equal the pre-rank order.")
    return head + (f"{summ['valid_rate']:.1%} valid answers (invalid ones scored after repair: unlisted "
                   f"candidates appended in pre-rank order); {copy_text} of the valid ones copy the pre-rank order.")


def _summary(lists: pd.DataFrame, systems: dict[str, list[np.ndarray]], keys: list[str], cfg: EvalConfig) -> dict:
    return summarise(score_systems(lists, systems, cfg), keys, cfg.bootstrap, cfg.seed)


def write_results(run: RunDir, lists: pd.DataFrame, systems: dict[str, list[np.ndarray]], cfg: EvalConfig,
                  sampled: fusion.SampledRows | None = None, notes: Sequence[str] = (),
                  fresh: Sequence[dict] = ()) -> dict:
    """Score ``systems`` (every list), ``sampled`` (``{name: (positions, orders)}``: a subset of the
    lists) and every system saved under ``eval/systems/`` for ``cfg.split`` (``fresh``: those this call
    saved, taken as they are: :func:`gr2.eval.systems.load_systems`); write
    ``eval/results.json`` and ``eval/results.md`` (``notes``: lines after the LLM rows' notes); return
    each row's N@5.

    A saved system covering every list is a row of the main table. One covering a subset gets its own
    table (and ``results.json["subsets"][name]``): the system and the pre-rank order on the same lists;
    systems on the same subset share a table, ``sampled`` ones first.
    """
    sampled = sampled or {}
    saved = load_systems(run, cfg.split, fresh)
    full, partial = saved_orders(saved, lists, set(systems) | set(sampled))
    partial = {**sampled, **partial}
    keys = metric_keys(cfg.recall_ks, cfg.ndcg_ks)
    summary = _summary(lists, {**systems, **full}, keys, cfg)
    results: dict = {"split": cfg.split, "n_lists": len(lists), "systems": summary}
    tables = [markdown_table(summary, keys, len(lists), f"Re-ranking on {cfg.split} lists", cfg.bootstrap)]
    k = len(lists["candidates"].iloc[0])
    # Systems scored on the same sample of lists share one table (and one pre-rank row).
    groups: dict[tuple[int, ...], dict[str, list[np.ndarray]]] = {}
    for name, (rows, orders) in partial.items():
        groups.setdefault(tuple(int(r) for r in rows), {})[name] = [orders]
    for rows, members in groups.items():
        sub = {REFERENCE: [baselines.prerank_orders(len(rows), k)], **members}
        sub_summary = _summary(lists.iloc[list(rows)], sub, keys, cfg)
        for name in members:
            results.setdefault("subsets", {})[name] = {
                "n_lists": len(rows), "systems": {n: sub_summary[n] for n in (REFERENCE, name)}}
        tables.append(markdown_table(sub_summary, keys, len(rows),
                                     f"{', '.join(members)} on {len(rows)} of the {len(lists)} {cfg.split} lists",
                                     cfg.bootstrap))
    notes = [*(llm_note(s) for s in saved if s["name"] in full or s["name"] in partial), *notes]
    if notes:
        tables.append("LLM rows:\n\n" + "\n".join(notes) + "\n")
    out = run.stage_dir("eval")
    atomic_write_json(out / "results.json", results)
    table = "\n".join(tables)
    atomic_write_text(out / "results.md", table)
    print(table)
    rows_n5 = {name: round(row["metrics"]["N@5"], 4) for name, row in summary.items()}
    rows_n5.update({name: round(sub["systems"][name]["metrics"]["N@5"], 4)
                    for name, sub in results.get("subsets", {}).items()})
    return rows_n5
