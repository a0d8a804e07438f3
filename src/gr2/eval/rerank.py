"""``gr2 eval rerank``: add one LLM's row to a run's results table (:func:`run_rerank_eval`).

The model re-ranks the run's lists (:mod:`gr2.llm.rerank`: generate → parse, or direct scoring), the
row is saved as ``eval/systems/<name>.json`` (:mod:`gr2.eval.systems`) and, when the split is the
table's, the table is re-rendered with every saved row (:func:`gr2.eval.stage.run_eval`, without
re-running the other models). The eval stage itself makes its LLM rows with :mod:`gr2.eval.llm_rows`.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from gr2.eval.config import EvalConfig
from gr2.eval.llm_rows import load_model, rerank_system
from gr2.eval.stage import run_eval
from gr2.eval.systems import system_path
from gr2.lists import sample_lists
from gr2.llm.generate import GenerationParams
from gr2.prompts.render import PromptConfig
from gr2.runs import RunDir

log = logging.getLogger(__name__)


def _recorded_eval_config(run: RunDir) -> EvalConfig:
    """The run's ``eval`` config as recorded in its manifest (defaults where none is recorded)."""
    recorded = run.manifest().get("config", {}).get("eval") or {}
    known = {f.name for f in fields(EvalConfig)}
    return EvalConfig(**{k: v for k, v in recorded.items() if k in known})


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
    (:func:`gr2.llm.rerank.rerank_lists_direct`; ``params`` unused). ``eval_cfg``: the table's config
    (default: the one recorded in the run's manifest). Returns the row's summary
    (:func:`gr2.eval.llm_rows.evaluate_rerank`).
    """
    from gr2.reuse import detach

    lists = sample_lists(run, split, n_lists, seed)
    llm, tok = load_model(run, model, device)
    detach(run, "eval")  # an eval folder linked from another run gets this run's row only
    name = name or Path(model).name
    summary = rerank_system(run, llm, tok, model, name, lists, split, prompt, params, batch_size, mode)["summary"]
    cfg = eval_cfg or _recorded_eval_config(run)
    if cfg.split == split:
        run_eval(run, cfg, llm_rows_too=False)
    else:
        log.info("rerank eval: %s saved; the results table is on %s lists, not re-rendered",
                 system_path(run, name), cfg.split)
    return summary
