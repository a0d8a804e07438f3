"""`gr2 run` through every stage on a tiny slice: data → sid → candidates → midtrain → traces → sft →
rl → eval, with a tiny random llama as the student and the evidence teacher; checks the artifact
contract of every stage (docs/artifacts.md) and that a second run resumes without redoing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm

from gr2.config import load_config
from gr2.pipeline import STAGES, run_pipeline

PROMPT = {"item_format": "compact", "max_history": 3, "domain_priming": False, "max_explanation_words": None,
          "order": "prerank"}  # as the quick profile: the eval adds the shuffled-input control


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_every_stage_on_a_tiny_slice(generic_dir: Path, tmp_path: Path):
    student = tiny_llm.save_student(tmp_path / "student")
    overrides = [
        "data.k_core=2",
        "sid.levels=3", "sid.codebook_size=8", "sid.epochs=2", "sid.hidden_dims=[16]", "sid.latent_dim=8",
        "sid.batch_size=16", "sid.progress=false",
        "candidates.prerank=cooc", "candidates.n_train_examples=12",
        f"midtrain.model={student}", "midtrain.n_examples=16", "midtrain.warmup_steps=1", "midtrain.steps=1",
        "midtrain.batch_size=4", "midtrain.max_seq_len=64", "midtrain.eval_examples_per_task=2",
        "traces.teacher=evidence", "traces.gate_override=true", f"traces.prompt={json.dumps(PROMPT)}",
        "sft.steps=1", "sft.batch_size=2", "sft.max_seq_len=2048",
        "rl.steps=1", "rl.batch_size=2", "rl.num_generations=2", "rl.max_completion_length=8",
        "rl.overlong_buffer=4", "rl.n_examples=4", f"rl.prompt={json.dumps(PROMPT)}",
        "eval.bootstrap=20", "eval.lambdamart_params.cv_folds=0", "eval.lambdamart_params.n_estimators=10",
        "eval.llm_lists=3", "eval.llm_max_new_tokens=8",
    ]
    cfg = load_config(None, overrides, base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg)

    manifest = json.loads((run.path / "manifest.json").read_text())
    for stage in STAGES:
        assert manifest["stages"][stage.name]["status"] == "done", stage.name
        for out in stage.outputs:
            assert (run.path / out).exists(), out
    sids = pd.read_parquet(run.path / "sid/sids.parquet")
    assert sids["sid"].is_unique
    traces = json.loads((run.path / "traces/stats.json").read_text())
    assert traces["teacher"]["name"].startswith("evidence") and traces["acceptance"]["accepted"] > 0
    assert json.loads((run.path / "sft/metrics.json").read_text())["steps"] >= 1
    assert len((run.path / "rl/log.jsonl").read_text().splitlines()) >= 1
    results = json.loads((run.path / "eval/results.json").read_text())
    assert {"pre-rank order", "LambdaMART (val-trained)"} <= set(results["systems"])
    rows = set(results["systems"]) | set(results.get("subsets", {}))
    for model in ("sft", "rl"):  # each mode, and each with the candidates shown shuffled (the control)
        assert {f"{model} (direct)", f"{model} (reasoning)", f"{model} (direct, shuffled order shown)",
                f"{model} (reasoning, shuffled order shown)"} <= rows
    report = (run.path / "report.md").read_text()
    assert "## Results" in report and "sft (direct)" in report, "eval writes the run's report"

    finished = {s: v["finished"] for s, v in manifest["stages"].items()}
    run_pipeline(tmp_path / "run", cfg)  # resumes: nothing is redone
    again = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert {s: v["finished"] for s, v in again.items()} == finished
