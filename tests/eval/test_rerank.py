"""Re-ranking evaluation of an LLM: a tiny random llama (garbage → all invalid, repaired = pre-rank
order), a fake generator with known answers (exact metrics), saved systems in the results table."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import tiny_llm

import gr2.eval.llm_rows as rows
import gr2.eval.rerank as rr
import gr2.llm.rerank as llm_rerank
from gr2.eval import systems
from gr2.eval.config import EvalConfig
from gr2.eval.stage import run_eval
from gr2.llm.generate import GenerationParams
from gr2.metrics.ranking import evaluate_rankings
from gr2.prompts.items import load_item_texts
from gr2.prompts.render import PromptConfig, assistant_text, presentation_order
from gr2.runs import model_source

from .conftest import K, sid_of

PROMPT = PromptConfig(domain_priming=False, item_format="compact", max_history=3)
TABLE = EvalConfig(lambdamart=False, bootstrap=20, random_seeds=2)
_SHOWN = re.compile(r"^\[(\d+)\] (\S+)", re.MULTILINE)


def lists_of(run) -> pd.DataFrame:
    return pd.read_parquet(run.path / "candidates" / "test.parquet")


def tiny_model_dir(tmp_path):
    tok = tiny_llm.make_tokenizer(["Purchase history candidates re-rank recommendations explanation"] * 3)
    model = tiny_llm.make_model(len(tok), max_positions=4096)
    out = tmp_path / "tiny-llama"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def shown_sids(conversation) -> list[str]:
    return [sid for _, sid in _SHOWN.findall(conversation[-1]["content"])]


def fake_generator(answer):
    """A stand-in for generate_chat: ``answer(shown SIDs) -> ranked SIDs`` for every conversation."""
    def generate(model, tokenizer, conversations, params=None, batch_size=4, progress=False):
        return [assistant_text("fake reasoning", answer(shown_sids(c))) for c in conversations]
    return generate


def oracle(lists: pd.DataFrame):
    """Puts each list's target (found by the list's candidate set) first."""
    target_of = {frozenset(sid_of(int(c)) for c in cands): sid_of(int(t))
                 for cands, t in zip(lists["candidates"], lists["target"])}
    return lambda shown: sorted(shown, key=lambda s: s != target_of[frozenset(shown)])


def write_system(run, name: str, split: str, orders: dict, model: str = "m") -> None:
    """A saved system as :func:`gr2.eval.systems.save_system` writes it (the fields the table reads)."""
    systems.system_path(run, name).parent.mkdir(parents=True, exist_ok=True)
    systems.system_path(run, name).write_text(json.dumps({
        "name": name, "model": model, "split": split, "n_lists": len(orders), "orders": orders,
        "valid": dict.fromkeys(orders, True), "summary": {"valid_rate": 1.0}}))


def test_tiny_llama_outputs_are_invalid_and_repaired_to_the_prerank_order(rerank_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_dir(rerank_run.path)
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    lists = lists_of(rerank_run)
    outs = llm_rerank.rerank_lists(model, tok, lists, load_item_texts(rerank_run), PROMPT,
                           GenerationParams(max_new_tokens=6), batch_size=4)
    assert [o.example_id for o in outs] == list(lists["example_id"])
    assert all(o.result.repaired == list(range(K)) for o in outs)
    summary = rows.evaluate_rerank(outs, lists)
    assert summary["valid_rate"] == 0.0 and summary["errors"]["wrong_format"] == len(lists)
    assert summary["identity_rate_presented"] is None and summary["identity_rate_prerank"] is None
    assert summary["metrics"] == summary["prerank_metrics"]
    assert summary["mean_output_tokens"] == 6.0


def test_position_copier_is_exposed_by_the_shuffle(rerank_run, monkeypatch):
    monkeypatch.setattr(llm_rerank, "generate_chat", fake_generator(lambda shown: shown))
    lists = lists_of(rerank_run)
    outs = llm_rerank.rerank_lists(None, _Tok(), lists, load_item_texts(rerank_run), PROMPT)
    summary = rows.evaluate_rerank(outs, lists)
    presented = [presentation_order(K, PROMPT, e) for e in lists["example_id"]]
    assert [o.result.order for o in outs] == presented
    assert summary["valid_rate"] == 1.0 and summary["identity_rate_presented"] == 1.0
    identity = sum(p == list(range(K)) for p in presented) / len(presented)
    assert summary["identity_rate_prerank"] == pytest.approx(identity, abs=1e-4) and identity < 1
    labels = list(lists["labels"])
    expected = evaluate_rankings(presented, labels)
    assert summary["metrics"]["N@5"] == pytest.approx(expected["N@5"], abs=1e-4)
    assert summary["metrics"]["R@1"] == pytest.approx(expected["R@1"], abs=1e-4)


def test_oracle_answers_give_exact_metrics(rerank_run, monkeypatch):
    lists = lists_of(rerank_run)
    monkeypatch.setattr(llm_rerank, "generate_chat", fake_generator(oracle(lists)))
    outs = llm_rerank.rerank_lists(None, _Tok(), lists, load_item_texts(rerank_run), PROMPT)
    summary = rows.evaluate_rerank(outs, lists)
    assert summary["valid_rate"] == 1.0 and summary["errors"]["ok"] == len(lists)
    assert {k: summary["metrics"][k] for k in ("R@1", "R@3", "N@3", "N@5", "N@10", "MRR")} == dict.fromkeys(
        ("R@1", "R@3", "N@3", "N@5", "N@10", "MRR"), 1.0)
    assert summary["prerank_metrics"]["R@1"] == pytest.approx(2 / 6, abs=1e-4)  # target first for users 0 and 5


class _Tok:
    """Counts whitespace-separated words: enough of a tokenizer for the fake generator's answers."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_run_rerank_eval_adds_rows_to_the_table(rerank_run, monkeypatch, tmp_path):
    folder = tiny_model_dir(tmp_path)
    lists = lists_of(rerank_run)
    run_eval(rerank_run, TABLE)
    before = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    monkeypatch.setattr(llm_rerank, "generate_chat", fake_generator(oracle(lists)))
    summary = rr.run_rerank_eval(rerank_run, str(folder), name="oracle LLM", prompt=PROMPT, device="cpu",
                                 eval_cfg=TABLE)
    assert summary["valid_rate"] == 1.0
    saved = json.loads(systems.system_path(rerank_run, "oracle LLM").read_text())
    assert saved["name"] == "oracle LLM" and saved["model"] == str(folder) and saved["split"] == "test"
    assert set(saved["orders"]) == set(lists["example_id"]) and all(saved["valid"].values())
    assert saved["prompt"]["item_format"] == "compact" and saved["generation"]["max_new_tokens"] == 512
    outputs = systems.system_path(rerank_run, "oracle LLM").with_suffix(".outputs.jsonl").read_text().splitlines()
    assert len(outputs) == len(lists) and json.loads(outputs[0])["status"] == "ok"

    results = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    assert set(results["systems"]) == set(before["systems"]) | {"oracle LLM"}
    assert results["systems"]["oracle LLM"]["metrics"]["N@5"] == 1.0
    assert results["systems"]["pre-rank order"] == before["systems"]["pre-rank order"]
    table = (rerank_run.path / "eval" / "results.md").read_text()
    assert "| oracle LLM | 1.0000 |" in table and "on 6 lists; 100.0% valid answers" in table

    # a garbage-writing model on a sample of 3 lists: its own table, equal to the pre-rank order there
    monkeypatch.undo()
    summary = rr.run_rerank_eval(rerank_run, str(folder), name="tiny", n_lists=3, prompt=PROMPT,
                                 params=GenerationParams(max_new_tokens=4), device="cpu", eval_cfg=TABLE)
    assert summary["n_lists"] == 3 and summary["valid_rate"] == 0.0
    results = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    assert "tiny" not in results["systems"] and "oracle LLM" in results["systems"]
    sub = results["subsets"]["tiny"]
    assert sub["n_lists"] == 3 and set(sub["systems"]) == {"pre-rank order", "tiny"}
    assert sub["systems"]["tiny"]["metrics"] == sub["systems"]["pre-rank order"]["metrics"]
    assert "tiny on 3 of the 6 test lists" in (rerank_run.path / "eval" / "results.md").read_text()


def test_saved_systems_of_other_splits_and_taken_names_are_skipped(rerank_run):
    lists = lists_of(rerank_run)
    orders = {e: list(range(K))[::-1] for e in lists["example_id"]}
    for name, split in (("reverse", "test"), ("val system", "val"), ("oracle", "test")):
        write_system(rerank_run, name, split, orders)
    run_eval(rerank_run, TABLE)
    results = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    assert "reverse" in results["systems"] and "val system" not in results["systems"]
    assert results["systems"]["oracle"]["metrics"]["R@1"] == 1.0  # the baseline, not the saved file
    labels = list(lists["labels"])
    expected = evaluate_rankings([np.arange(K)[::-1]] * len(lists), labels)
    assert results["systems"]["reverse"]["metrics"]["N@5"] == pytest.approx(expected["N@5"])


def test_systems_on_the_same_sample_share_one_table(rerank_run):
    lists = lists_of(rerank_run)
    sample = list(lists["example_id"])[:3]
    for name, order in (("reverse", list(range(K))[::-1]), ("identity", list(range(K)))):
        write_system(rerank_run, name, "test", dict.fromkeys(sample, order))
    run_eval(rerank_run, TABLE)
    results = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    assert set(results["subsets"]) == {"reverse", "identity"}
    assert results["subsets"]["identity"]["systems"]["identity"]["metrics"] == \
        results["subsets"]["identity"]["systems"]["pre-rank order"]["metrics"]
    table = (rerank_run.path / "eval" / "results.md").read_text()
    assert table.count("on 3 of the 6 test lists") == 1 and "identity, reverse on 3 of the 6" in table


def test_rescoring_a_model_drops_its_earlier_rows(rerank_run, monkeypatch):

    orders = {e: list(range(K)) for e in lists_of(rerank_run)["example_id"]}
    for name, split, model in (("sft (old name)", "test", "sft"), ("sft on val", "val", "sft"),
                               ("rl (direct)", "test", "rl")):
        write_system(rerank_run, name, split, orders, model=model)
        systems.system_path(rerank_run, name).with_suffix(".outputs.jsonl").write_text("{}\n")
    assert systems.drop_systems(rerank_run, "test", "sft") == ["sft (old name)"]
    left = sorted(p.name for p in systems.system_path(rerank_run, "x").parent.iterdir())
    assert left == ["rl_direct.json", "rl_direct.outputs.jsonl", "sft_on_val.json", "sft_on_val.outputs.jsonl"]

    # the eval stage drops a model's saved rows before it re-scores the model
    scored = []
    monkeypatch.setattr(rows, "load_model", lambda run, model: (None, None))
    monkeypatch.setattr(rows, "rerank_system", lambda run, llm, tok, model, name, *a: scored.append((model, name)))
    monkeypatch.setattr(rows, "STAGE_MODELS", ())
    rows.llm_rows(rerank_run, dataclasses.replace(TABLE, llm_models=["rl"], llm_lists=2))
    assert scored and {m for m, _ in scored} == {"rl"}
    assert [s["name"] for s in systems.load_systems(rerank_run, "test")] == []
    assert [s["name"] for s in systems.load_systems(rerank_run, "val")] == ["sft on val"]


def test_model_source(rerank_run):
    assert model_source(rerank_run, "smollm2-135m") == "smollm2-135m"
    with pytest.raises(FileNotFoundError, match="sft"):
        model_source(rerank_run, "sft")
    (rerank_run.path / "sft" / "model").mkdir(parents=True)
    (rerank_run.path / "sft" / "model" / "config.json").write_text("{}")
    assert model_source(rerank_run, "sft") == str(rerank_run.path / "sft" / "model")
    with pytest.raises(ValueError):
        model_source(None, "rl")
