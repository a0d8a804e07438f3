"""The RL stage on a tiny run: prompt rows, a 2-step DAPO run with the tiny llama, resume, artifacts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gr2.prompts.items import load_item_texts
from gr2.rl.config import RLConfig
from gr2.rl.stage import prompt_rows, select_lists, train_rl
from gr2.runs import read_jsonl

from .conftest import PROMPT, K, make_lists, make_model, make_tokenizer, tiny_cfg

LOG_FIELDS = ("step", "reward", "rl/valid_rate", "rl/copy_shown_rate", "dapo/zero_std_frac",
              "dapo/resample_rounds", "completions/mean_length", "loss")


def test_config_validation_and_prompt_reasoning():
    from gr2.rl.config import REWARD_NAMES
    from gr2.rl.rewards import REWARDS

    assert set(REWARD_NAMES) == set(REWARDS)
    cfg = RLConfig(reasoning=False, prompt={"order": "prerank", "reasoning": True})
    assert cfg.prompt_config.reasoning is False and cfg.prompt_config.order == "prerank"
    assert RLConfig().prompt_config.order == "shuffled"  # position-bias counter on by default
    with pytest.raises(ValueError, match="overlong_buffer"):
        RLConfig(max_completion_length=32, overlong_buffer=64)
    with pytest.raises(ValueError, match="grad_accum"):
        RLConfig(batch_size=3, num_generations=2, grad_accum=4)
    with pytest.raises(ValueError, match="reward"):
        RLConfig(reward="bogus")


def test_select_lists():
    lists = make_lists()
    lists.loc[len(lists)] = {**lists.iloc[0].to_dict(), "example_id": "none", "labels": [0] * K}
    assert len(select_lists(lists, RLConfig())) == len(lists) - 1
    assert len(select_lists(lists, RLConfig(n_examples=3))) == 3
    multi = lists.copy()
    multi.at[0, "labels"] = [1, 1, 0, 0]
    with pytest.raises(ValueError, match="auc"):
        select_lists(multi, RLConfig(reward="conditional"))
    assert len(select_lists(multi, RLConfig(reward="auc"))) == len(lists) - 1


def test_prompt_rows(tiny_run):
    tok = make_tokenizer()
    lists = pd.read_parquet(tiny_run.path / "candidates/train.parquet")
    items = load_item_texts(tiny_run)
    rows = prompt_rows(lists.head(2), items, tok, PROMPT)
    assert [r["example_id"] for r in rows] == ["train-0", "train-1"]
    r = rows[1]
    assert r["prompt"].startswith("<|im_start|>system\n") and r["prompt"].endswith("<|im_start|>assistant\n")
    assert r["candidate_labels"] == [0, 1, 0, 0] and sorted(r["presented"]) == list(range(K))
    assert r["candidate_sids"] == [items[i].sid for i in lists.iloc[1]["candidates"]]
    shown = [r["candidate_sids"][p] for p in r["presented"]]
    assert r["prompt"].index(shown[0]) < r["prompt"].index(shown[1])  # candidates appear as presented


def _rows(tmp_path, prompt=PROMPT):
    tok = make_tokenizer()
    from .conftest import make_run

    run = make_run(tmp_path / "run")
    lists = select_lists(pd.read_parquet(run.path / "candidates/train.parquet"), tiny_cfg())
    return tok, prompt_rows(lists, load_item_texts(run), tok, prompt)


def test_train_two_steps_logs_and_resumes(tmp_path):
    tok, rows = _rows(tmp_path)
    out = tmp_path / "rl"
    _, info = train_rl(make_model(len(tok)), tok, rows, tiny_cfg(steps=1), out)
    assert info["global_step"] == 1 and info["resumed_from"] is None
    assert (out / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()
    with (out / "log.jsonl").open("a") as fh:  # a line written after the checkpoint by an interrupted run
        fh.write(json.dumps({"step": 7, "reward": 0.0}) + "\n")

    _, info = train_rl(make_model(len(tok)), tok, rows, tiny_cfg(steps=2), out)
    assert info["global_step"] == 2 and info["resumed_from"] == "checkpoint-1"
    lines = read_jsonl(out / "log.jsonl")
    assert [x["step"] for x in lines] == [1, 2]
    for line in lines:
        assert all(key in line for key in LOG_FIELDS), set(LOG_FIELDS) - set(line)
        assert line["completions/mean_length"] <= 6 and 0 <= line["rl/valid_rate"] <= 1
    assert (out / "model" / "config.json").exists() and any((out / "tb").iterdir())


def test_run_rl_writes_the_artifacts(tmp_path, tiny_run):
    from gr2.rl.stage import OUTPUTS, run_rl

    tok = make_tokenizer()
    folder = tmp_path / "policy"
    make_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    summary = run_rl(tiny_run, tiny_cfg(init=str(folder), lora=True, lora_r=2, lora_alpha=4,
                                        lora_targets=["q_proj", "v_proj"]))
    assert summary["steps"] == 2 and summary["lists"] == 6  # the list without a positive is dropped
    assert all((tiny_run.path / o).exists() for o in OUTPUTS)
    metrics = json.loads((tiny_run.path / "rl/metrics.json").read_text())
    assert metrics["lists_available"] == 7 and metrics["log"]["lines"] == 2
    assert metrics["config"]["reward"] == "conditional" and metrics["train"]["global_step"] == 2
    assert not (tiny_run.path / "rl/checkpoints").exists()
    saved = json.loads((tiny_run.path / "rl/model/config.json").read_text())
    assert saved["model_type"] == "llama"
    assert not list((tiny_run.path / "rl/model").glob("adapter_*"))  # merged, a plain model


def test_vllm_is_passed_to_trl_only_when_asked_and_installed(tmp_path):
    import importlib.util

    from gr2.training.dapo import grpo_args

    assert grpo_args(RLConfig(), tmp_path, "cpu").use_vllm is False
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(RuntimeError, match="pip install vllm"):
            grpo_args(RLConfig(use_vllm=True), tmp_path, "cpu")


def test_constrained_is_on_by_default_without_reasoning_and_refused_with_vllm():
    assert RLConfig(reasoning=False).constrained_rollouts and not RLConfig(reasoning=True).constrained_rollouts
    assert RLConfig(reasoning=True, constrained=True).constrained_rollouts
    assert not RLConfig(reasoning=False, constrained=False).constrained_rollouts
    assert not RLConfig(use_vllm=True).constrained_rollouts  # reasoning: free sampling, vLLM allowed
    with pytest.raises(ValueError, match="constrained=false with use_vllm"):
        RLConfig(reasoning=False, use_vllm=True)


@pytest.mark.parametrize("reasoning", [False, True])
def test_constrained_rollouts_are_all_valid(tmp_path, reasoning):
    """The untrained tiny llama never writes a valid ranking freely; through the constraint every
    rollout is one (and, with reasoning, carries a non-empty explanation)."""
    from gr2.rl.stage import rollout_constraint

    cfg = tiny_cfg(steps=1, reasoning=reasoning, constrained=True, overlong_buffer=0)
    tok, rows = _rows(tmp_path, cfg.prompt_config)
    constraint = rollout_constraint(tok, cfg)
    budget = max(constraint.min_new_tokens(r["candidate_sids"]) for r in rows) + (12 if reasoning else 0)
    cfg = tiny_cfg(steps=1, reasoning=reasoning, constrained=True, overlong_buffer=0, max_completion_length=budget)
    out = tmp_path / "rl"
    model, info = train_rl(make_model(len(tok)), tok, rows, cfg, out)
    (line,) = read_jsonl(out / "log.jsonl")
    assert info["global_step"] == 1 and "generate" not in vars(model)  # the processor was bound for the call only
    assert line["rl/valid_rate"] == 1.0 and line["rl/format_rate"] == 1.0
    assert line["reward"] > -1.0 and line["completions/clipped_ratio"] == 0.0  # every answer ends with EOS
