"""Reading a run's artifacts for the report (formats: docs/artifacts.md).

Every reader returns ``None`` or an empty list when the file is missing, so a stage that was not
run becomes a "not run" section or a skipped plot, never an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gr2.runs import read_json

SYSTEMS_DIR = "eval/systems"
"""LLM re-ranker rows (``gr2.eval.systems.save_system``); read here without importing that module,
which loads the generation stack."""


def read_optional_json(path: Path) -> Any | None:
    """The parsed file, or ``None`` when it does not exist."""
    return read_json(path) if Path(path).is_file() else None


def retrieval_results(run_path: Path) -> dict[str, dict[str, Any]]:
    """``{split: eval/retrieval-<split>.json}`` for every split ``gr2 eval retrieval`` was run on."""
    return {p.stem.removeprefix("retrieval-"): read_json(p)
            for p in sorted((Path(run_path) / "eval").glob("retrieval-*.json"))}


def llm_systems(run_path: Path, split: str) -> dict[str, dict[str, Any]]:
    """``{path relative to the run: system}`` of every ``eval/systems/*.json`` scored on ``split``, by
    file name (the table's LLM rows)."""
    folder = Path(run_path) / SYSTEMS_DIR
    found = {f"{SYSTEMS_DIR}/{p.name}": read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
    return {rel: s for rel, s in found.items() if s.get("split") == split}
