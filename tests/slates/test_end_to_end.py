"""`gr2 run --slates` through every stage on a tiny slates file: data → sid → candidates → midtrain →
traces → sft → rl → eval with a tiny random llama, the evidence teacher and the graded NDCG reward;
the eval table's metrics are the graded ones (gain 2^g - 1, recall over every positive)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm

from gr2.config import load_config
from gr2.pipeline import run_pipeline
from gr2.stages import STAGE_NAMES, get_stage

PROMPT = {"item_format": "compact", "max_history": 3, "domain_priming": False, "max_explanation_words": None}

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _ndcg(labels: list[int], k: int) -> float:
    dcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(labels[:k]))
    ideal = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(sorted(labels, reverse=True)[:k]))
    return dcg / ideal


def test_every_stage_on_tiny_slates(slates_jsonl: Path, items_csv: Path, tmp_path: Path):
    student = tiny_llm.save_student(tmp_path / "student")
    overrides = [
        "slates.val_fraction=0.25", "slates.test_fraction=0.25",
        "sid.levels=3", "sid.codebook_size=8", "sid.epochs=2", "sid.hidden_dims=[16]", "sid.latent_dim=8",
        "sid.batch_size=16", "sid.progress=false",
        f"midtrain.model={student}", "midtrain.n_examples=16", "midtrain.warmup_steps=1", "midtrain.steps=1",
        "midtrain.batch_size=4", "midtrain.max_seq_len=64", "midtrain.eval_examples_per_task=2",
        "traces.teacher=evidence", "traces.gate_override=true", f"traces.prompt={json.dumps(PROMPT)}",
        "sft.steps=1", "sft.batch_size=2", "sft.max_seq_len=2048",
        "rl.reward=ndcg", "rl.steps=1", "rl.batch_size=2", "rl.num_generations=2", "rl.max_completion_length=8",
        "rl.overlong_buffer=4", "rl.n_examples=4", f"rl.prompt={json.dumps(PROMPT)}",
        "eval.bootstrap=20", "eval.lambdamart_params.cv_folds=0", "eval.lambdamart_params.n_estimators=10",
        "eval.llm_lists=3", "eval.llm_max_new_tokens=8",
    ]
    cfg = load_config(None, overrides, base={"slates": {"path": str(slates_jsonl), "items": str(items_csv)}})
    run = run_pipeline(tmp_path / "run", cfg)

    manifest = json.loads((run.path / "manifest.json").read_text())
    for name in STAGE_NAMES:
        assert manifest["stages"][name]["status"] == "done", name
        for out in get_stage(name, cfg).outputs:
            assert (run.path / out).exists(), out
    assert not (run.path / "candidates/prerank.json").exists(), "no pre-ranker ran"
    traces = json.loads((run.path / "traces/stats.json").read_text())
    assert traces["acceptance"]["accepted"] > 0
    assert json.loads((run.path / "rl/metrics.json").read_text())["config"]["reward"] == "ndcg"

    test = pd.read_parquet(run.path / "candidates/test.parquet")
    assert any(sum(g > 0 for g in labels) > 1 for labels in test["labels"]), "multi-positive lists evaluated"
    results = json.loads((run.path / "eval/results.json").read_text())
    prerank = results["systems"]["pre-rank order"]["metrics"]
    assert prerank["N@5"] == pytest.approx(sum(_ndcg(list(g), 5) for g in test["labels"]) / len(test))
    recall1 = [sum(g[:1] > 0) / sum(g > 0) for g in test["labels"]]
    assert prerank["R@1"] == pytest.approx(sum(recall1) / len(test))
    assert results["systems"]["oracle"]["metrics"]["N@5"] == pytest.approx(1.0)
    table = (run.path / "eval/results.md").read_text()
    assert "sft" in table and "rl" in table, "the LLM rows are in the table"

    finished = {s: v["finished"] for s, v in manifest["stages"].items()}
    run_pipeline(tmp_path / "run", cfg)  # resumes: nothing is redone
    again = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert {s: v["finished"] for s, v in again.items()} == finished
