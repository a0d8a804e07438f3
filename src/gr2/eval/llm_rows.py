"""The LLM rows of the results table: each model re-ranks the table's sample of lists in each mode
(:mod:`gr2.llm.rerank`), the answers are summarised (:func:`evaluate_rerank`) and saved as systems
(:mod:`gr2.eval.systems`); :func:`llm_rows` returns what it saved, so the table that follows in the
same call takes the rows from memory.

Metrics are computed on the repaired orders, so an invalid answer still gets a (usually
pre-rank-like) score; the valid rate says how often that happened.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gr2.eval import fusion
from gr2.eval.config import EvalConfig
from gr2.eval.systems import drop_systems, save_system
from gr2.llm.generate import GenerationParams
from gr2.llm.rerank import RerankOutput, rerank_lists
from gr2.metrics.ranking import DEFAULT_NDCG_KS, DEFAULT_RECALL_KS, evaluate_rankings
from gr2.prompts.items import load_item_texts
from gr2.prompts.parse import error_counts, identity_rate, steps_counts
from gr2.prompts.render import ItemText, PromptConfig
from gr2.runs import STAGE_MODELS, RunDir, model_source

log = logging.getLogger(__name__)


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
      ``steps`` — with a think prompt (``reasoning_format="think"``, reasoning mode), answers per status
      of the explanation's three tagged steps (:func:`gr2.prompts.parse.steps_counts`), else ``{}``;
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
        "steps": steps_counts(results),
        "identity_rate_presented": _finite(identity_rate(results, "presented")),
        "identity_rate_prerank": _finite(identity_rate(results, "prerank")),
        "metrics": _means([r.repaired for r in results], labels, recall_ks, ndcg_ks),
        "prerank_metrics": _means([np.arange(len(x)) for x in labels], labels, recall_ks, ndcg_ks),
        "mean_output_tokens": _finite(float(np.mean([o.n_tokens for o in outputs]))) if n else None,
        "mean_output_chars": _finite(float(np.mean([len(o.text) for o in outputs]))) if n else None,
    }


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
    the saved system (:func:`gr2.eval.systems.save_system`; its ``summary`` is :func:`evaluate_rerank`'s).
    Callers scoring several rows with one model load it once.
    ``items``: the run's item texts (:func:`gr2.prompts.items.load_item_texts`, read when omitted)."""
    if mode not in ("reasoning", "direct"):
        raise ValueError(f"mode must be 'reasoning' or 'direct', got {mode!r}")
    items = load_item_texts(run) if items is None else items
    log.info("rerank eval: %s as %r (%s) on %d %s lists", model, name, mode, len(lists), split)
    if mode == "direct":
        from gr2.llm.rerank import rerank_lists_direct
        from gr2.llm.scoring import PositionPrior

        outputs = rerank_lists_direct(llm, tokenizer, lists, items, prompt, batch_size, progress=True,
                                      prior=PositionPrior.load(model_source(run, model)))
        params = None
    else:
        outputs = rerank_lists(llm, tokenizer, lists, items, prompt, params, batch_size, progress=True)
    return save_system(run, name, model, split, outputs, evaluate_rerank(outputs, lists), prompt, params, mode)


def llm_row_specs(system: str, prompt: PromptConfig, cfg: EvalConfig, qualifier: str | None = None
                  ) -> list[tuple[str, str, PromptConfig]]:
    """``(row name, mode, prompt)`` of every row a model gets: one per mode in ``cfg.llm_modes`` with
    the trained prompt, plus (``cfg.llm_controls``) the same with the other presentation order. Rows
    are named ``system (qualifier, mode[, control])`` (:func:`gr2.eval.labels.model_label`)."""
    other = "prerank" if prompt.order == "shuffled" else "shuffled"
    label = {"prerank": "pre-rank order shown", "shuffled": "shuffled order shown"}[other]
    head = [qualifier] if qualifier else []
    specs = []
    for mode in cfg.llm_modes:
        specs.append((f"{system} ({', '.join([*head, mode])})", mode, prompt))
        if cfg.llm_controls:
            specs.append((f"{system} ({', '.join([*head, mode, label])})", mode,
                          dataclasses.replace(prompt, order=other)))
    return specs


def llm_rows(run: RunDir, cfg: EvalConfig) -> list[dict[str, Any]]:
    """Re-rank with each of ``cfg.llm_models`` in each of ``cfg.llm_modes`` (the trained prompt
    format; plus the presentation controls), save each as a system (``eval/systems/``) and return
    them, which :func:`gr2.eval.stage.write_results` turns into rows. Each model is loaded once for all
    its rows, and every row is scored on the same sample of lists. A model's earlier saved rows are
    deleted first (:func:`gr2.eval.systems.drop_systems`): they came from an older version of it or a row name no
    longer produced. The fusion row's model (:func:`gr2.eval.fusion.fusion_model`) also scores its
    sample of validation lists (:func:`gr2.eval.fusion.score_val_lists`)."""
    from gr2.eval.labels import model_label
    from gr2.lists import sample_lists
    from gr2.prompts.items import trained_prompt

    models = []
    for model in cfg.llm_models:
        if model in STAGE_MODELS and not (run.path / model / "model" / "config.json").exists():
            log.info("eval: no %s model in this run, row skipped", model)
        else:
            models.append(model)
    if not models:
        return []
    lists = sample_lists(run, cfg.split, cfg.llm_lists, cfg.seed)
    items = load_item_texts(run)
    params = GenerationParams(max_new_tokens=cfg.llm_max_new_tokens, temperature=0.0)
    fused = fusion.fusion_model(models, cfg)
    saved = []
    for model in models:
        dropped = drop_systems(run, cfg.split, model)
        if dropped:
            log.info("eval: re-scoring %s replaces its saved rows %s", model, ", ".join(dropped))
        llm, tok = load_model(run, model)
        system, qualifier = model_label(run, model)
        specs = llm_row_specs(system, trained_prompt(run.path, model) or PromptConfig(), cfg, qualifier)
        for name, mode, prompt in specs:
            saved.append(rerank_system(run, llm, tok, model, name, lists, cfg.split, prompt, params,
                                       cfg.llm_batch_size, mode, items))
        if model == fused:
            fusion.score_val_lists(run, llm, tok, model, specs, cfg, items)
        del llm, tok  # the next model is loaded only after this one is released
    return saved
