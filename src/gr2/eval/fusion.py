"""The fusion row of the results table: LambdaMART with an LLM's direct scores as extra features.

"LambdaMART + <model> score" ("LambdaMART + GR2 score" for a run's RL model): the table's LambdaMART
re-ranker, with the same hyper-parameters (:func:`gr2.eval.lambdamart.fit_lambdamart`), over its features
plus :data:`gr2.rerank.LLM_FEATURE_NAMES` — the LLM's direct score of each candidate (log-probability
of writing its SID first, :func:`gr2.llm.rerank.rerank_lists_direct`; the model's own, without a position prior, which
the trees' pre-rank features already carry), the candidate's rank by that score and its gap to the
list's best score. Does the LLM add anything a feature model does not already know?

Same protocol as the LambdaMART row (fitted on validation lists, evaluated on test lists), but the LLM
must score both, ~1 s per list on a CPU:

* the eval stage (:func:`gr2.eval.llm_rows.llm_rows`) direct-scores a seeded sample of
  ``eval.fusion_val_lists`` val lists with the fusion model (:func:`fusion_model`) and the prompt of
  its direct row, and writes ``eval/fusion/val_scores.json``;
* the test lists are that direct row's lists (the ``eval.llm_lists`` sample of every LLM row), and their
  scores are the ones the row saved (``scores`` in ``eval/systems/<row>.json``): nothing is scored twice;
* the fusion model is fitted on every val list, as the plain row is; the lists the LLM did not score
  carry its features as missing (NaN, which LightGBM routes at each split), so the trees learn from
  the plain features on all lists and from the LLM's on the scored ones, and the fusion row does not
  lose to the plain one for having seen fewer lists. The table shows the plain LambdaMART on the same
  test lists next to the fusion row (:data:`SAME_LISTS_ROW`); the note says how many val lists the
  LLM scored.

Files: ``eval/fusion/val_scores.json`` (``{"model", "row", "scores": {example_id: [score per candidate,
pre-rank order]}}``), ``eval/fusion/model`` and ``eval/fusion/importances.json`` (as
``eval/lambdamart/``: the importances show how much the trees use the LLM's score).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gr2.eval.config import EvalConfig
from gr2.eval.labels import model_label
from gr2.eval.lambdamart import fit_lambdamart
from gr2.eval.systems import system_path
from gr2.lists import sample_lists
from gr2.prompts.render import ItemText, PromptConfig
from gr2.runs import RunDir, atomic_write_json, read_json

if TYPE_CHECKING:
    from gr2.rerank import FeatureBuilder

log = logging.getLogger(__name__)

FOLDER = "fusion"
SAME_LISTS_ROW = "LambdaMART (val-trained, same lists)"
"""The plain LambdaMART row on the fusion row's test lists."""

SampledRows = dict[str, tuple[np.ndarray, np.ndarray]]
"""``{row name: (positions in the table's lists, orders of those lists)}``."""


def enabled(cfg: EvalConfig) -> bool:
    """Whether the table gets a fusion row (see :attr:`EvalConfig.fusion_val_lists`)."""
    return cfg.lambdamart and cfg.split == "test" and cfg.fusion_val_lists > 0 and "direct" in cfg.llm_modes


def fusion_model(models: Sequence[str], cfg: EvalConfig) -> str | None:
    """Which of ``models`` (the LLMs the eval scores this time) feeds the fusion row: ``cfg.fusion_model``,
    by default the last of the run's own (a variant's model, ``variants/...``, only when the run has none);
    ``None`` without a fusion row."""
    if not enabled(cfg) or not models:
        return None
    if cfg.fusion_model is None:
        own = [m for m in models if not m.startswith("variants/")]
        return (own or list(models))[-1]
    if cfg.fusion_model not in models:
        log.info("eval: fusion model %s is not among the LLMs scored (%s), no fusion row", cfg.fusion_model,
                 ", ".join(models))
        return None
    return cfg.fusion_model


def val_scores_path(run: RunDir) -> Path:
    return run.path / "eval" / FOLDER / "val_scores.json"


def score_val_lists(run: RunDir, llm: Any, tokenizer: Any, model: str,
                    specs: Sequence[tuple[str, str, PromptConfig]], cfg: EvalConfig,
                    items: Mapping[int, ItemText]) -> None:
    """Direct-score the seeded sample of ``cfg.fusion_val_lists`` val lists with ``model`` (loaded:
    ``llm``, ``tokenizer``) and the prompt of its direct row (the first direct one of ``specs``, the
    rows of :func:`gr2.eval.llm_rows.llm_row_specs`); write :func:`val_scores_path`."""
    from gr2.llm.rerank import rerank_lists_direct

    row, prompt = next((name, prompt) for name, mode, prompt in specs if mode == "direct")
    lists = sample_lists(run, "val", cfg.fusion_val_lists, cfg.seed)
    log.info("eval: %s direct-scores %d val lists for the fusion row", model, len(lists))
    outputs = rerank_lists_direct(llm, tokenizer, lists, items, prompt, cfg.llm_batch_size, progress=True)
    atomic_write_json(val_scores_path(run), {"model": model, "row": row,
                                             "scores": {o.example_id: o.scores for o in outputs}})


def with_llm_scores(lists: pd.DataFrame, scores: Mapping[str, Sequence[float]]) -> tuple[np.ndarray, pd.DataFrame]:
    """``(positions, scored)``: the positions in ``lists`` of the lists that ``scores`` covers (by
    ``example_id``, ascending) and those lists with their scores as the ``llm_scores`` column."""
    from gr2.rerank import LLM_SCORES_COLUMN

    ids = lists["example_id"].astype(str)
    rows = np.flatnonzero(ids.isin(set(scores)).to_numpy())
    scored = lists.iloc[rows].assign(**{LLM_SCORES_COLUMN: [list(scores[e]) for e in ids.iloc[rows]]})
    return rows, scored


def with_missing_llm_scores(lists: pd.DataFrame, scores: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Every list of ``lists`` with an ``llm_scores`` column: its scores where ``scores`` has them, NaN
    for each candidate elsewhere (missing features, :func:`gr2.rerank.features.llm_score_features`)."""
    from gr2.rerank import LLM_SCORES_COLUMN

    column = [list(scores[e]) if e in scores else [float("nan")] * len(c)
              for e, c in zip(lists["example_id"].astype(str), lists["candidates"])]
    return lists.assign(**{LLM_SCORES_COLUMN: column})


def _saved_scores(run: RunDir) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(val scores file, the direct row's saved system)``, or ``None`` (logged) when either is missing."""
    path = val_scores_path(run)
    if not path.is_file():
        log.info("eval: no %s (no LLM scored val lists for it), no fusion row", path)
        return None
    val = read_json(path)
    row_path = system_path(run, val["row"])
    test = read_json(row_path) if row_path.is_file() else {}
    if test.get("model") != val["model"] or test.get("split") != "test" or not test.get("scores"):
        log.warning("eval: %s has no test-list scores of %s, no fusion row", row_path, val["model"])
        return None
    return val, test


def fusion_rows(run: RunDir, lists: pd.DataFrame, val_lists: pd.DataFrame, features: FeatureBuilder,
                plain: np.ndarray, cfg: EvalConfig) -> tuple[SampledRows, list[str]]:
    """The fusion row and :data:`SAME_LISTS_ROW` on the test lists the LLM scored (``lists``: the table's
    lists; ``val_lists``: every validation list; ``features``: the plain row's fitted
    :class:`gr2.rerank.FeatureBuilder`; ``plain``: its orders of every list) and the fusion row's note;
    ``({}, [])`` when the LLM's scores are missing."""
    saved = _saved_scores(run)
    if saved is None:
        return {}, []
    val, test = saved
    fit_lists = with_missing_llm_scores(val_lists, val["scores"])
    rows, test_lists = with_llm_scores(lists, test["scores"])
    ranker = fit_lambdamart(run, features.with_llm_scores(), fit_lists, cfg, FOLDER)
    n_scored = int(fit_lists["example_id"].astype(str).isin(set(val["scores"])).sum())
    name = f"LambdaMART + {model_label(run, val['model'])[0]} score"
    note = (f"- {name}: LambdaMART with the hyper-parameters of the val-trained row, over its features plus "
            f"`{val['model']}`'s direct score of each candidate (log-probability of writing it first, as in "
            f"{val['row']}), its rank in the list and its gap to the list's best score; fitted on all "
            f"{ranker.fit_info['n_lists']} val lists, {n_scored} of them scored by the LLM (a seeded sample; "
            f"missing elsewhere), evaluated on the LLM rows' {len(rows)} test lists; "
            f"{SAME_LISTS_ROW} is the val-trained row on the same lists.")
    return {SAME_LISTS_ROW: (rows, plain[rows]), name: (rows, np.stack(ranker.rerank(test_lists)))}, [note]
