"""Learning curve of the ``sft`` stage: validation N@5 against training lists seen.

Both objectives (trace SFT and listwise) get the same curve, measured the way the eval's direct rows
are (:func:`gr2.llm.rerank.rerank_lists_direct` on a seeded sample of validation lists, shown in
the trained prompt's order), so curves of different objectives on the same budget can be laid over
each other (``report/sft_curve.png``). One JSON line per point in ``sft/curve.jsonl``; a resumed run
appends its points after the ones already there. With several processes each one measures (the same
lists) and the main one writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from gr2.llm.scoring import PositionPrior
from gr2.prompts.render import ItemText, PromptConfig
from gr2.runs import read_jsonl
from gr2.training.dist import barrier, is_main

__all__ = ["CurveCallback", "curve_steps", "val_metrics"]


def curve_steps(total: int, points: int) -> set[int]:
    """Steps at which a point is measured: 0 (before training) and ``points - 1`` more, evenly spaced,
    the last at ``total``."""
    return {int(round(i * total / (points - 1))) for i in range(points)}


def val_metrics(model: Any, tokenizer: Any, lists: pd.DataFrame, items: Mapping[int, ItemText],
                prompt: PromptConfig, batch_size: int = 8, prior: PositionPrior | None = None) -> dict[str, float]:
    """Direct-mode ``R@1`` and ``N@5`` of ``model`` on ``lists`` (one positive label per list; with the
    model's position ``prior``, as the eval scores it), the pre-rank order's ``prerank_N@5`` on the
    same lists and their number ``lists``."""
    from gr2.llm.rerank import rerank_lists_direct
    from gr2.metrics.ranking import labels_in_order, ndcg_at_k, recall_at_k

    was_training = model.training
    model.eval()
    outs = rerank_lists_direct(model, tokenizer, lists, items, prompt, batch_size=batch_size, prior=prior)
    if was_training:
        model.train()
    ranked = [labels_in_order(o.result.order, labels) for o, labels in zip(outs, lists["labels"])]
    return {"lists": len(lists), "R@1": round(float(np.mean([recall_at_k(r, 1) for r in ranked])), 4),
            "N@5": round(float(np.mean([ndcg_at_k(r, 5) for r in ranked])), 4),
            "prerank_N@5": round(float(np.mean([ndcg_at_k(np.asarray(labels, dtype=float), 5)
                                                for labels in lists["labels"]])), 4)}


class CurveCallback(TrainerCallback):
    """Measures :func:`val_metrics` at :func:`curve_steps` and appends ``{"step", "lists_seen",
    "R@1", "N@5"}`` lines to ``path``."""

    def __init__(self, path: Path, tokenizer: Any, lists: pd.DataFrame, items: Mapping[int, ItemText],
                 prompt: PromptConfig, lists_per_step: int, points: int, prior: PositionPrior | None = None) -> None:
        self.path = Path(path)
        self.tokenizer, self.lists, self.items, self.prompt = tokenizer, lists, items, prompt
        self.lists_per_step = lists_per_step
        self.points = points
        self.prior = prior
        self.steps: set[int] = set()
        self.done: set[int] = set()

    def _measure(self, model: Any, step: int) -> None:
        if step in self.done:
            return  # measured before an interruption
        point = {"step": step, "lists_seen": step * self.lists_per_step,
                 **val_metrics(model, self.tokenizer, self.lists, self.items, self.prompt, prior=self.prior)}
        self.done.add(step)
        if not is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(point) + "\n")

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.steps = curve_steps(state.max_steps, self.points)
        barrier()  # the stage's main process has removed an old curve
        self.done = {p["step"] for p in read_jsonl(self.path)}
        barrier()  # every process has read the file before the main one appends to it
        if state.global_step == 0:
            self._measure(model, 0)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step in self.steps:
            self._measure(model, state.global_step)

