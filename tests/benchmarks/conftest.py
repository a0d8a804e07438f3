"""A tiny run directory (data/, sid/, candidates/train) and a tiny random llama saved as a model
folder, for running the RL benchmark scripts end to end; the scripts loaded from ``benchmarks/``."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from rl.conftest import PROMPT, make_model, make_run, make_tokenizer

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
#: ``--set`` overrides: the short prompts the tiny tokenizer was trained on.
PROMPT_OVERRIDE = f"rl.prompt={json.dumps(dataclasses.asdict(PROMPT))}"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_rl_run(tmp_path: Path) -> tuple[Path, Path]:
    """``(run_dir, model_dir)``."""
    run = make_run(tmp_path / "run")
    tok = make_tokenizer()
    model_dir = tmp_path / "policy"
    make_model(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return run.path, model_dir
