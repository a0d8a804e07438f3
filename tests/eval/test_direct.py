"""Direct (reasoning-free) re-ranking in the evaluation: scores, orders, saved rows, row specs."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import gr2.eval.llm_rows as rows
import gr2.eval.rerank as rr
from gr2.eval import systems
from gr2.eval.config import EvalConfig
from gr2.eval.llm_rows import llm_row_specs
from gr2.eval.stage import run_eval
from gr2.llm.rerank import rerank_lists_direct
from gr2.llm.scoring import (
    answer_separator,
    direct_prompt_ids,
    rank_by_scores,
    sid_path,
)
from gr2.prompts.items import load_item_texts
from gr2.prompts.render import PromptConfig, build_messages, presentation_order

from .test_rerank import PROMPT, TABLE, lists_of, tiny_model_dir


def test_rank_by_scores_orders_by_decreasing_score_and_keeps_index_order_on_ties():
    assert rank_by_scores([0.1, 0.5, 0.3]) == [1, 2, 0]
    assert rank_by_scores([1.0, 1.0, 2.0]) == [2, 0, 1]
    assert rank_by_scores([float("nan"), -1.0, -math.inf, 0.0]) == [3, 1, 0, 2]
    assert rank_by_scores([]) == []


def brute_force_scores(model, tok, ids: list[int], paths: list[list[int]]) -> list[float]:
    """log p(path | ids) of each path, one plain forward pass per candidate (no trie, no cache)."""
    out = []
    for path in paths:
        seq = torch.tensor([ids + path])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=seq).logits[0].float(), dim=-1)
        out.append(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(path)))
    return out


@pytest.fixture
def tiny(rerank_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_dir(rerank_run.path)
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_direct_orders_follow_each_candidates_first_recommendation_log_probability(rerank_run, tiny):
    _, model, tok = tiny
    lists = lists_of(rerank_run)
    items = load_item_texts(rerank_run)
    outs = rerank_lists_direct(model, tok, lists, items, PROMPT, batch_size=4)
    assert [o.example_id for o in outs] == list(lists["example_id"])
    ranking_only = dataclasses.replace(PROMPT, reasoning=False)
    sep = answer_separator(tok)
    for o, (_, row) in zip(outs, lists.iterrows()):
        rendered = build_messages(list(row["history"]), list(row["candidates"]), ranking_only,
                                  rng_key=o.example_id, items=items)
        assert o.result.ok and o.n_tokens == 0
        assert o.result.presented == presentation_order(len(row["candidates"]), PROMPT, o.example_id)
        paths = [sid_path(tok, s, False, sep) for s in rendered.candidate_sids]
        expected = brute_force_scores(model, tok, direct_prompt_ids(tok, rendered.messages), paths)
        assert o.result.order == rank_by_scores(expected)
        assert json.loads(o.text)["recommendations"] == [rendered.candidate_sids[i] for i in o.result.order]
    summary = rows.evaluate_rerank(outs, lists)
    assert summary["valid_rate"] == 1.0 and summary["mean_output_tokens"] == 0.0


def test_run_rerank_eval_direct_saves_a_direct_row(rerank_run, tiny):
    folder, _, _ = tiny
    run_eval(rerank_run, TABLE)
    summary = rr.run_rerank_eval(rerank_run, str(folder), name="tiny (direct)", prompt=PROMPT, device="cpu",
                                 eval_cfg=TABLE, mode="direct")
    assert summary["valid_rate"] == 1.0
    saved = json.loads(systems.system_path(rerank_run, "tiny (direct)").read_text())
    assert saved["mode"] == "direct" and saved["generation"] is None
    table = (rerank_run.path / "eval" / "results.md").read_text()
    assert "| tiny (direct) |" in table and "direct scoring (no text generated" in table
    with pytest.raises(ValueError, match="mode must be"):
        rr.run_rerank_eval(rerank_run, str(folder), mode="beam", eval_cfg=TABLE)


def test_llm_row_specs_add_the_other_presentation_as_a_control():
    shuffled = PromptConfig(order="shuffled")
    specs = llm_row_specs("sft", shuffled, EvalConfig(llm_modes=["direct", "reasoning"]))
    assert [(n, m, p.order) for n, m, p in specs] == [
        ("sft (direct)", "direct", "shuffled"), ("sft (direct, pre-rank order shown)", "direct", "prerank"),
        ("sft (reasoning)", "reasoning", "shuffled"),
        ("sft (reasoning, pre-rank order shown)", "reasoning", "prerank")]
    specs = llm_row_specs("rl", PromptConfig(order="prerank"), EvalConfig(llm_modes=["direct"]))
    assert [(n, p.order) for n, _, p in specs] == [("rl (direct)", "prerank"),
                                                   ("rl (direct, shuffled order shown)", "shuffled")]
    specs = llm_row_specs("rl", shuffled, EvalConfig(llm_modes=["direct"], llm_controls=False))
    assert [n for n, _, _ in specs] == ["rl (direct)"]


