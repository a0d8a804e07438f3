"""The LLM rows an evaluation saved: ``eval/systems/<name>.json`` (and ``<name>.outputs.jsonl``), what
``gr2 eval rerank`` adds to a run's table and the report reads (:func:`save_system` has the format)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gr2.llm.generate import GenerationParams
from gr2.llm.rerank import RerankOutput
from gr2.prompts.render import PromptConfig
from gr2.runs import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    read_json,
    remove_path,
)

SYSTEMS_DIR = "systems"


def system_path(run: RunDir, name: str) -> Path:
    """``eval/systems/<name>.json``, the name made file-safe."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "system"
    return run.path / "eval" / SYSTEMS_DIR / f"{slug}.json"


def save_system(run: RunDir, name: str, model: str, split: str, outputs: Sequence[RerankOutput],
                summary: Mapping[str, Any], prompt_cfg: PromptConfig | None = None,
                params: GenerationParams | None = None, mode: str = "reasoning") -> dict[str, Any]:
    """Write ``eval/systems/<name>.json``::

        {"name", "model", "split", "n_lists", "mode" ("reasoning" | "direct"), "prompt": PromptConfig
         fields, "generation": GenerationParams fields (null in direct mode),
         "orders": {example_id: [pre-rank indices, best first]} (repaired),
         "valid": {example_id: bool}, "summary": evaluate_rerank(...),
         "scores": {example_id: [score of each candidate, pre-rank order]} (direct mode only)}

    and ``eval/systems/<name>.outputs.jsonl`` (one line per list: example_id, status, order,
    repaired, presented, text) for inspection. Returns the JSON object written."""
    path = system_path(run, name)
    scores = {o.example_id: o.scores for o in outputs if o.scores is not None}
    record = {
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
    }
    atomic_write_json(path, record)
    lines = [json.dumps({"example_id": o.example_id, "status": o.result.status, "order": o.result.order,
                         "repaired": o.result.repaired, "presented": o.result.presented, "text": o.text},
                        ensure_ascii=False) for o in outputs]
    atomic_write_text(path.with_suffix(".outputs.jsonl"), "\n".join(lines) + "\n")
    return record


def _saved_systems(run: RunDir, split: str, skip: Sequence[str] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, system)`` of every saved system of ``split`` (``eval/systems/*.json``), by file name;
    the files of the systems named in ``skip`` are not read."""
    folder = run.path / "eval" / SYSTEMS_DIR
    skipped = {system_path(run, name) for name in skip}
    paths = sorted(p for p in folder.glob("*.json") if p not in skipped) if folder.is_dir() else []
    return [(p, s) for p, s in ((p, read_json(p)) for p in paths) if s.get("split") == split]


def load_systems(run: RunDir, split: str, fresh: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Every saved system of ``split``, by file name (``eval/systems/*.json``): those in ``fresh``
    (saved by the same call, :func:`save_system`'s records) as they are, the others read."""
    fresh = [s for s in fresh if s.get("split") == split]
    found = [(system_path(run, s["name"]), s) for s in fresh]
    found += _saved_systems(run, split, skip=[s["name"] for s in fresh])
    return [s for _, s in sorted(found, key=lambda x: x[0].name)]


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
