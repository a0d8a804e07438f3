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


def set_config(run: RunDir, **sections) -> None:
    manifest = json.loads((run.path / "manifest.json").read_text())
    for name, values in sections.items():
        manifest["config"].setdefault(name, {}).update(values)
    (run.path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("reasoning", "rl"), [(True, ("pure RL", "RecZero-style")),
                                               (False, ("reasoning-free pure RL", "RecZero-style"))])
def test_rl_from_the_midtrained_model_is_pure_rl(tmp_path, reasoning, rl):
    run = fake_run(tmp_path / "run", reasoning=reasoning)
    set_config(run, rl={"init": "midtrain"})
    assert model_label(run, "rl") == rl
    set_config(run, sft={"objective": "listwise"})  # whatever the (unused) SFT stage was
    assert model_label(run, "rl") == rl
    set_config(run, rl={"init": "smollm2-135m"})  # RL from another model: its raw name
    assert model_label(run, "rl") == ("rl", None)


@pytest.mark.parametrize(("mode", "reasoning", "sft", "rl"), [
    ("rejection", True, ("SFT", "cold start on 64 rejection traces"),
     ("RecOne", "cold-start SFT on 64 traces → RL")),
    ("targeted", False, ("SFT", "cold start on 64 targeted traces"),
     ("reasoning-free RecOne", "cold-start SFT on 64 targeted traces → RL")),
])
def test_a_cold_start_sft_on_a_few_traces_is_recone(tmp_path, mode, reasoning, sft, rl):
    run = fake_run(tmp_path / "run", mode, reasoning)
    set_config(run, sft={"objective": "traces", "max_examples": 64})
    assert model_label(run, "sft") == sft and model_label(run, "rl") == rl
    # fewer accepted traces than the cap: the label says how many the SFT model saw
    (run.path / "sft" / "metrics.json").write_text(json.dumps({"traces_accepted": 40}))
    assert model_label(run, "sft")[1] == f"cold start on 40 {mode} traces"
    assert model_label(run, "rl")[1].startswith("cold-start SFT on 40 ")
    set_config(run, sft={"objective": "listwise"})  # max_examples only samples traces
    assert model_label(run, "sft") == ("SFT", "listwise")


def test_a_variant_inside_the_run_is_labelled_from_its_own_config(tmp_path):
    base = fake_run(tmp_path / "base")
    pure = fake_run(base.path / "variants" / "pure-rl", reasoning=False, stages=("rl",))
    set_config(pure, rl={"init": "midtrain"})
    assert model_label(base, "variants/pure-rl/rl") == ("reasoning-free pure RL", "RecZero-style")
    assert model_label(base, "rl") == ("GR2", "rejection → RL")


def test_the_trained_prompt_keeps_its_reasoning_format(tmp_path):
    run = fake_run(tmp_path / "run")
    assert trained_prompt(run.path, "rl").reasoning_format == "free"  # a manifest from before the field
    set_config(run, rl={"prompt": {"order": "prerank", "reasoning_format": "think"}})
    assert trained_prompt(run.path, "rl").think and not trained_prompt(run.path, "sft").think


@pytest.mark.parametrize(("mode", "sft", "rl", "system"), [
    ("rejection", {}, {"init": "sft"}, "GR2"),
    ("targeted", {}, {"init": "sft"}, "targeted → RL"),
    ("rejection", {"objective": "listwise"}, {"init": "sft"}, "listwise → RL"),
    ("targeted", {}, {"init": "midtrain"}, "pure RL"),
    ("targeted", {"max_examples": 64}, {"init": "sft"}, "RecOne"),
])
def test_every_rl_recipe_trained_without_reasoning_is_named_reasoning_free(tmp_path, mode, sft, rl, system):
    """The prefix marks an RL model trained with ranking-only answers (``rl.reasoning=false``), the
    same way whatever the recipe; the qualifier stays the recipe's (the paper's reasoning-free GR2
    is named without it)."""
    names = {}
    for reasoning in (True, False):
        run = fake_run(tmp_path / str(reasoning), mode, reasoning)
        set_config(run, sft=sft, rl=rl)
        names[reasoning] = model_label(run, "rl")
    assert names[True][0] == system and names[False][0] == f"reasoning-free {system}"
    assert names[False][1] == (None if system == "GR2" else names[True][1])
    set_config(run, rl={"init": "smollm2-135m"})  # RL from another model keeps its own name
    assert model_label(run, "rl") == ("rl", None)
