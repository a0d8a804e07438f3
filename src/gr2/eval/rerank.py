"""Re-ranking evaluation of any LLM: prompt every candidate list, generate, parse, score.

Prompts come from :func:`gr2.prompts.render.build_messages` (candidates shown shuffled by default,
keyed by ``example_id``, so a model that copies positions is exposed: method.md §5), answers from
:func:`gr2.llm.generate.generate_chat` (every decoding parameter explicit) and are read back by the
prompt's own parser, which maps SIDs or candidate numbers to pre-rank indices and repairs invalid
answers (unlisted candidates appended in pre-rank order). Metrics are computed on the repaired
orders, so an invalid answer still gets a (usually pre-rank-like) score; the valid rate says how
often that happened.

A system's orders are saved as ``eval/systems/<name>.json`` (format: :func:`save_system`); the
evaluation stage (:func:`gr2.eval.stage.run_eval`) adds every saved system of its split to the results
table. :func:`rerank_system` scores and saves one system with a loaded model (the eval stage scores
all rows of a model with one load); :func:`run_rerank_eval` does all of it for a run directory.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.eval.config import EvalConfig
from gr2.eval.metrics import DEFAULT_NDCG_KS, DEFAULT_RECALL_KS, evaluate_rankings
from gr2.llm.generate import GenerationParams, generate_chat
from gr2.prompts.items import load_item_texts
from gr2.prompts.parse import ParseResult, error_counts, identity_rate
from gr2.prompts.render import ItemText, PromptConfig, build_messages
from gr2.runs import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    model_source,
    read_json,
    remove_path,
)

log = logging.getLogger(__name__)

SYSTEMS_DIR = "systems"


@dataclass
class RerankOutput:
    """One list's answer: the raw text, its parse (``result.status``, ``result.order`` when valid,
    ``result.repaired`` always a permutation of pre-rank indices, ``result.presented``), its
    length in tokens of the model's tokenizer and, in direct mode, each candidate's score (pre-rank
    order; :mod:`gr2.eval.direct`)."""

    example_id: str
    text: str
    result: ParseResult
    n_tokens: int
    scores: list[float] | None = None


# -- generate and score ---------------------------------------------------------------------------
def rerank_lists(
    model: Any,
    tokenizer: Any,
    lists_df: pd.DataFrame,
    items: Mapping[int, ItemText],
    prompt_cfg: PromptConfig | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> list[RerankOutput]:
    """Re-rank every list of ``lists_df`` (columns ``example_id``, ``history``, ``candidates``) with
    ``model``; the shuffled presentation is keyed by ``example_id``. Outputs are in row order."""
    cfg = prompt_cfg or PromptConfig()
    ids = [str(e) for e in lists_df["example_id"]]
    prompts = [build_messages(list(h), list(c), cfg, rng_key=e, items=items)
               for e, h, c in zip(ids, lists_df["history"], lists_df["candidates"])]
    texts = generate_chat(model, tokenizer, [p.messages for p in prompts], params, batch_size=batch_size,
                          progress=progress)
    return [RerankOutput(e, t, p.parse(t), len(tokenizer(t, add_special_tokens=False)["input_ids"]))
            for e, p, t in zip(ids, prompts, texts)]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def _means(orders: Sequence[Sequence[int]], labels: Sequence[np.ndarray], recall_ks: Sequence[int],
           ndcg_ks: Sequence[int]) -> dict[str, float | None]:
    res = evaluate_rankings(orders, labels, recall_ks, ndcg_ks)
    return {k: _finite(v) for k, v in res.items() if k != "n"}


def evaluate_rerank(
    outputs: Sequence[RerankOutput],
    lists_df: pd.DataFrame,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
) -> dict[str, Any]:
    """Summary of a re-ranking run on the lists it covers (outputs matched to ``lists_df`` rows by
    ``example_id``):

    * ``valid_rate`` — share of answers that parse to a permutation of the candidates; ``errors`` —
      answers per parse status (``ok``, ``wrong_format``, ``foreign``, ``duplicate``, ``missing``);
    * ``identity_rate_presented`` — share of valid answers that repeat the candidates in the order
      they were *shown* (position copying); ``identity_rate_prerank`` — share of valid answers equal
      to the *pre-ranker's* order. They differ only with a shuffled presentation; ``None`` without
      a valid answer;
    * ``metrics`` — mean R@k / N@k / MRR / AUC of the repaired orders; ``prerank_metrics`` — the
      pre-rank order on the same lists;
    * ``mean_output_tokens``, ``mean_output_chars`` — answer length.
    """
    labels_of = dict(zip(lists_df["example_id"].astype(str), lists_df["labels"]))
    labels = [np.asarray(labels_of[o.example_id]) for o in outputs]
    results = [o.result for o in outputs]
    n = len(outputs)
    return {
        "n_lists": n,
        "valid_rate": _finite(sum(r.ok for r in results) / n) if n else None,
        "errors": error_counts(results),
        "identity_rate_presented": _finite(identity_rate(results, "presented")),
        "identity_rate_prerank": _finite(identity_rate(results, "prerank")),
        "metrics": _means([r.repaired for r in results], labels, recall_ks, ndcg_ks),
        "prerank_metrics": _means([np.arange(len(x)) for x in labels], labels, recall_ks, ndcg_ks),
        "mean_output_tokens": _finite(float(np.mean([o.n_tokens for o in outputs]))) if n else None,
        "mean_output_chars": _finite(float(np.mean([len(o.text) for o in outputs]))) if n else None,
    }


# -- saved systems --------------------------------------------------------------------------------
def system_path(run: RunDir, name: str) -> Path:
    """``eval/systems/<name>.json``, the name made file-safe."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "system"
    return run.path / "eval" / SYSTEMS_DIR / f"{slug}.json"


def save_system(run: RunDir, name: str, model: str, split: str, outputs: Sequence[RerankOutput],
                summary: Mapping[str, Any], prompt_cfg: PromptConfig | None = None,
                params: GenerationParams | None = None, mode: str = "reasoning") -> Path:
    """Write ``eval/systems/<name>.json``::

        {"name", "model", "split", "n_lists", "mode" ("reasoning" | "direct"), "prompt": PromptConfig
         fields, "generation": GenerationParams fields (null in direct mode),
         "orders": {example_id: [pre-rank indices, best first]} (repaired),
         "valid": {example_id: bool}, "summary": evaluate_rerank(...),
         "scores": {example_id: [score of each candidate, pre-rank order]} (direct mode only)}

    and ``eval/systems/<name>.outputs.jsonl`` (one line per list: example_id, status, order,
    repaired, presented, text) for inspection. Returns the JSON path."""
    path = system_path(run, name)
    scores = {o.example_id: o.scores for o in outputs if o.scores is not None}
    atomic_write_json(path, {
        "name": name,
        "model": model,
        "split": split,
        "n_lists": len(outputs),
        "mode": mode,
        "prompt": asdict(prompt_cfg or PromptConfig()),
        "generation": None if mode == "direct" else (params or GenerationParams()).to_dict(),
        "orders": {o.example_id: [int(i) for i in o.result.repaired] for o in outputs},
        "valid": {o.example_id: o.result.ok for o in outputs},
        "summary": dict(summary),
        **({"scores": scores} if scores else {}),
    })
    lines = [json.dumps({"example_id": o.example_id, "status": o.result.status, "order": o.result.order,
                         "repaired": o.result.repaired, "presented": o.result.presented, "text": o.text},
                        ensure_ascii=False) for o in outputs]
    atomic_write_text(path.with_suffix(".outputs.jsonl"), "\n".join(lines) + "\n")
    return path


def _saved_systems(run: RunDir, split: str) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, system)`` of every saved system of ``split`` (``eval/systems/*.json``), by file name."""
    folder = run.path / "eval" / SYSTEMS_DIR
    found = [(p, read_json(p)) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [(p, s) for p, s in found if s.get("split") == split]


def load_systems(run: RunDir, split: str) -> list[dict[str, Any]]:
    """Every saved system of ``split`` (``eval/systems/*.json``), by file name."""
    return [s for _, s in _saved_systems(run, split)]


def drop_systems(run: RunDir, split: str, model: str) -> list[str]:
    """Delete every saved system of ``model`` on ``split`` (its JSON and outputs) and return their
    names. The eval stage re-scores a model with all of its rows, so rows from an earlier version of
    the model, or under a name no longer produced, must not come back into the table."""
    dropped = []
    for path, system in _saved_systems(run, split):
        if system.get("model") == model:
            remove_path(path)
            remove_path(path.with_suffix(".outputs.jsonl"))
            dropped.append(system["name"])
    return dropped


def _recorded_eval_config(run: RunDir) -> EvalConfig:
    """The run's ``eval`` config as recorded in its manifest (defaults where none is recorded)."""
    recorded = run.manifest().get("config", {}).get("eval") or {}
    known = {f.name for f in fields(EvalConfig)}
    return EvalConfig(**{k: v for k, v in recorded.items() if k in known})


def sample_lists(run: RunDir, split: str, n_lists: int | None, seed: int) -> pd.DataFrame:
    """The run's ``candidates/<split>.parquet`` lists, or a seeded sample of ``n_lists`` of them (in
    file order); every LLM row of a table is scored on the same sample."""
    from gr2.eval.stage import load_lists

    lists = load_lists(run, split)
    if lists.empty:
        raise ValueError(f"{run.path}/candidates/{split}.parquet has no lists to re-rank")
    if n_lists is not None and n_lists < len(lists):
        lists = lists.sample(n=n_lists, random_state=seed).sort_index()
    return lists


def load_model(run: RunDir, model: str, device: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of ``model`` (:func:`gr2.runs.model_source`) on ``device``."""
    from gr2.llm.registry import load
    from gr2.training.setup import resolve_device

    return load(model_source(run, model), device=resolve_device(device))


def rerank_system(
    run: RunDir,
    llm: Any,
    tokenizer: Any,
    model: str,
    name: str,
    lists: pd.DataFrame,
    split: str,
    prompt: PromptConfig | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 4,
    mode: str = "reasoning",
    items: Mapping[int, ItemText] | None = None,
) -> dict[str, Any]:
    """Re-rank ``lists`` with a loaded model (``llm``, ``tokenizer``; ``model`` is what the row
    records as its source) in ``mode`` and save the system ``name``; returns
    :func:`evaluate_rerank`'s summary. Callers scoring several rows with one model load it once.
    ``items``: the run's item texts (:func:`gr2.prompts.items.load_item_texts`, read when omitted)."""
    if mode not in ("reasoning", "direct"):
        raise ValueError(f"mode must be 'reasoning' or 'direct', got {mode!r}")
    items = load_item_texts(run) if items is None else items
    log.info("rerank eval: %s as %r (%s) on %d %s lists", model, name, mode, len(lists), split)
    if mode == "direct":
        from gr2.eval.direct import rerank_lists_direct
        from gr2.llm.scoring import PositionPrior

        outputs = rerank_lists_direct(llm, tokenizer, lists, items, prompt, batch_size, progress=True,
                                      prior=PositionPrior.load(model_source(run, model)))
        params = None
    else:
        outputs = rerank_lists(llm, tokenizer, lists, items, prompt, params, batch_size, progress=True)
    summary = evaluate_rerank(outputs, lists)
    save_system(run, name, model, split, outputs, summary, prompt, params, mode)
    return summary


def run_rerank_eval(
    run: RunDir,
    model: str,
    name: str | None = None,
    split: str = "test",
    n_lists: int | None = None,
    prompt: PromptConfig | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 4,
    device: str = "auto",
    seed: int = 0,
    eval_cfg: EvalConfig | None = None,
    mode: str = "reasoning",
) -> dict[str, Any]:
    """``gr2 eval rerank``: re-rank the run's ``candidates/<split>.parquet`` lists with ``model``
    (registry name, folder, or a run's stage model such as ``"rl"``, :func:`gr2.runs.run_stage_model`),
    save the system (``eval/systems/<name>.json``) and, when ``split`` is the results table's split,
    re-render ``eval/results.{json,md}`` with every row (:func:`gr2.eval.stage.run_eval`; it refits
    LambdaMART).

    ``n_lists``: evaluate a random sample of that many lists (seeded by ``seed``; the table then
    compares the system with the pre-rank order on the same lists). ``mode``: ``"reasoning"`` generates
    and parses answers, ``"direct"`` scores the candidates without generating
    (:mod:`gr2.eval.direct`; ``params`` unused). ``eval_cfg``: the table's config
    (default: the one recorded in the run's manifest). Returns :func:`evaluate_rerank`'s summary.
    """
    from gr2.eval.stage import run_eval
    from gr2.reuse import detach

    lists = sample_lists(run, split, n_lists, seed)
    llm, tok = load_model(run, model, device)
    detach(run, "eval")  # an eval folder linked from another run gets this run's row only
    name = name or Path(model).name
    summary = rerank_system(run, llm, tok, model, name, lists, split, prompt, params, batch_size, mode)
    cfg = eval_cfg or _recorded_eval_config(run)
    if cfg.split == split:
        run_eval(run, cfg, llm_rows_too=False)
    else:
        log.info("rerank eval: %s saved; the results table is on %s lists, not re-rendered",
                 system_path(run, name), cfg.split)
    return summary
