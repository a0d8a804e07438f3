"""The catalogue as the prompts show it: ``item_id → ItemText`` (SID, title, category path)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from gr2.prompts.render import ItemText, PromptConfig
from gr2.runs import RunDir, run_stage_model

__all__ = ["item_texts", "load_item_texts", "trained_prompt"]


def item_texts(items: pd.DataFrame, sids: pd.DataFrame) -> dict[int, ItemText]:
    """``item_id → ItemText`` from ``data/items.parquet`` and ``sid/sids.parquet`` frames; every item
    must have a SID (a missing one means the SID table belongs to another catalogue)."""
    sid_of = dict(zip(sids["item_id"].astype(int), sids["sid"].astype(str)))
    missing = set(items["item_id"].astype(int)) - set(sid_of)
    if missing:
        raise ValueError(f"sid/sids.parquet has no SID for {len(missing)} items (e.g. {sorted(missing)[:5]})")
    cats = items["categories"] if "categories" in items else [()] * len(items)
    return {int(i): ItemText(int(i), sid_of[int(i)], title=t, categories=() if c is None else list(c))
            for i, t, c in zip(items["item_id"], items["title"], cats)}


def load_item_texts(run: Any) -> dict[int, ItemText]:
    """:func:`item_texts` of a run directory's ``data/items.parquet`` and ``sid/sids.parquet``."""
    return item_texts(pd.read_parquet(run.file("data", "items.parquet")),
                      pd.read_parquet(run.file("sid", "sids.parquet")))


def trained_prompt(run_path: str | Path, model: str = "sft") -> PromptConfig | None:
    """The prompt format a run's model was trained on, from its manifest: ``rl.prompt`` for the RL
    model (with ``rl.reasoning``), ``traces.prompt`` for every other model (the SFT student learnt the
    traces' format). A model of a run inside this one (``variants/targeted/rl``,
    :func:`gr2.runs.run_stage_model`) is read from that run's manifest. ``None`` when the manifest
    records none."""
    found = run_stage_model(RunDir(Path(run_path)), model)
    if found is not None:
        run_path, model = found[0].path, found[1]
    try:
        config = json.loads((Path(run_path) / "manifest.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return None
    section = config.get("rl" if model == "rl" else "traces") or {}
    raw = section.get("prompt")
    if not isinstance(raw, dict):
        return None
    known = {f.name for f in dataclasses.fields(PromptConfig)}
    prompt = PromptConfig(**{k: v for k, v in raw.items() if k in known})
    if model == "rl" and "reasoning" in section:
        prompt = dataclasses.replace(prompt, reasoning=bool(section["reasoning"]))
    return prompt
