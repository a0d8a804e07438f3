"""LLM rows named by what each model is, from the config of the run that trained it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gr2.eval.labels import model_label
from gr2.prompts.items import trained_prompt
from gr2.runs import RunDir, model_source


def fake_run(path: Path, traces_mode: str = "rejection", reasoning: bool = True, stages=("sft", "rl")) -> RunDir:
    """A run directory whose manifest records a config and whose stage models exist (empty)."""
    for stage in stages:
        (path / stage / "model").mkdir(parents=True)
        (path / stage / "model" / "config.json").write_text("{}")
    config = {"traces": {"mode": traces_mode, "prompt": {"order": "prerank"}},
              "rl": {"init": "sft", "reasoning": reasoning, "prompt": {"order": "prerank"}}}
    (path / "manifest.json").write_text(json.dumps({"config": config, "stages": {}}))
    return RunDir(path)


@pytest.mark.parametrize(("mode", "reasoning", "sft", "rl"), [
    ("rejection", True, ("SFT", "rejection traces"), ("GR2", "rejection → RL")),
    ("targeted", True, ("SFT", "targeted traces"), ("targeted → RL", None)),
    ("rejection", False, ("SFT", "rejection traces"), ("reasoning-free GR2", None)),
    ("targeted", False, ("SFT", "targeted traces"), ("reasoning-free targeted → RL", None)),
])
def test_stage_models_are_named_by_their_recipe(tmp_path, mode, reasoning, sft, rl):
    run = fake_run(tmp_path / "run", mode, reasoning)
    assert model_label(run, "sft") == sft and model_label(run, "rl") == rl


def test_a_variant_inside_the_run_is_named_and_prompted_from_its_own_config(tmp_path):
    base = fake_run(tmp_path / "base")
    fake_run(base.path / "variants" / "free", reasoning=False, stages=("rl",))
    assert model_label(base, "variants/free/rl") == ("reasoning-free GR2", None)
    assert model_source(base, "variants/free/rl") == str(base.path / "variants" / "free" / "rl" / "model")
    assert trained_prompt(base.path, "variants/free/rl").reasoning is False
    assert trained_prompt(base.path, "rl").reasoning is True


def test_other_models_keep_their_name(tmp_path):
    base = fake_run(tmp_path / "base")
    assert model_label(base, "smollm2-135m") == ("smollm2-135m", None)
    assert model_label(base, "checkpoints/sft") == ("checkpoints/sft", None)  # not a model of this run
    assert model_source(base, "checkpoints/sft") == "checkpoints/sft"
    assert model_label(RunDir(tmp_path / "no-manifest"), "sft") == ("sft", None)


@pytest.mark.parametrize(("reasoning", "rl"), [(True, "listwise → RL"), (False, "reasoning-free listwise → RL")])
def test_a_listwise_student_is_named_by_its_objective_not_by_traces(tmp_path, reasoning, rl):
    run = fake_run(tmp_path / "run", reasoning=reasoning)
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["config"]["sft"] = {"objective": "listwise"}
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert model_label(run, "sft") == ("SFT", "listwise")
    assert model_label(run, "rl") == (rl, None)
    manifest["config"]["sft"]["listwise_position_prior"] = True
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert model_label(run, "sft") == ("SFT", "listwise + position prior")
