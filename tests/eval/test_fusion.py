"""The fusion row "LambdaMART + <model> score": the eval stage direct-scores a sample of val lists with
the LLM, reuses its direct row's test scores, and writes the row next to LambdaMART on the same lists."""

from __future__ import annotations

import dataclasses
import json

import gr2.llm.rerank as direct
from gr2.eval import systems
from gr2.eval.config import EvalConfig
from gr2.eval.fusion import SAME_LISTS_ROW, fusion_model
from gr2.eval.stage import run_eval
from gr2.rerank import LLM_FEATURE_NAMES

from .conftest import N_USERS, K
from .test_rerank import tiny_model_dir

FUSION = EvalConfig(bootstrap=20, random_seeds=2, llm_modes=["direct"], llm_controls=False, llm_lists=4,
                    fusion_val_lists=5, lambdamart_params={"cv_folds": 0, "n_estimators": 5, "min_child_samples": 1,
                                                           "num_threads": 1})


def test_fusion_model_is_the_configured_or_the_last_scored_llm():
    assert fusion_model(["sft", "rl"], EvalConfig()) == "rl"
    assert fusion_model(["sft"], EvalConfig()) == "sft"
    assert fusion_model(["sft", "rl", "variants/recone/rl"], EvalConfig()) == "rl", "the run's own model"
    assert fusion_model(["variants/a/sft", "variants/b/rl"], EvalConfig()) == "variants/b/rl"
    assert fusion_model(["sft", "rl"], EvalConfig(fusion_model="sft")) == "sft"
    assert fusion_model(["sft"], EvalConfig(fusion_model="rl")) is None
    for off in (EvalConfig(fusion_val_lists=0), EvalConfig(lambdamart=False), EvalConfig(split="val"),
                EvalConfig(llm_modes=["reasoning"])):
        assert fusion_model(["sft", "rl"], off) is None
    assert fusion_model([], EvalConfig()) is None


def test_eval_stage_writes_the_fusion_row(rerank_run, tmp_path, monkeypatch):
    folder = str(tiny_model_dir(tmp_path))
    scored: list[str] = []
    real = direct.rerank_lists_direct

    def counting(model, tokenizer, lists, *args, **kwargs):
        scored.extend(lists["example_id"])
        return real(model, tokenizer, lists, *args, **kwargs)

    monkeypatch.setattr(direct, "rerank_lists_direct", counting)
    cfg = dataclasses.replace(FUSION, llm_models=[folder])
    run_eval(rerank_run, cfg)
    # every list is scored once: the LLM row's 4 test lists (reused by the fusion row) and 5 val lists
    assert len(scored) == len(set(scored)) == 9
    assert sum(e.startswith("val-") for e in scored) == 5

    row, llm_row = f"LambdaMART + {folder} score", f"{folder} (direct)"
    results = json.loads((rerank_run.path / "eval" / "results.json").read_text())
    assert "LambdaMART (val-trained)" in results["systems"]
    for name in (row, SAME_LISTS_ROW, llm_row):
        assert results["subsets"][name]["n_lists"] == 4
        assert set(results["subsets"][name]["systems"]) == {"pre-rank order", name}
    saved = json.loads(systems.system_path(rerank_run, llm_row).read_text())
    assert len(saved["scores"]) == 4 and all(len(s) == K for s in saved["scores"].values())
    table = (rerank_run.path / "eval" / "results.md").read_text()
    assert table.count(f"on 4 of the {N_USERS} test lists") == 1, "the fusion rows share the LLM rows' table"
    assert f"{SAME_LISTS_ROW}, {row}, {llm_row} on 4 of" in table
    assert f"| {row} |" in table and f"fitted on all {N_USERS} val lists, 5 of them scored by the LLM" in table

    fusion_dir = rerank_run.path / "eval" / "fusion"
    val = json.loads((fusion_dir / "val_scores.json").read_text())
    assert val["model"] == folder and val["row"] == llm_row and len(val["scores"]) == 5
    meta = json.loads((fusion_dir / "model" / "meta.json").read_text())
    assert meta["feature_names"][-len(LLM_FEATURE_NAMES):] == list(LLM_FEATURE_NAMES)
    assert meta["fit_info"]["n_lists"] == N_USERS and set(LLM_FEATURE_NAMES) <= set(
        json.loads((fusion_dir / "importances.json").read_text()))

    # re-rendering the table (gr2 eval rerank does) refits the row from the saved scores: nothing re-scored
    again = run_eval(rerank_run, cfg, llm_rows_too=False)
    assert len(scored) == 9 and again[row] == round(results["subsets"][row]["systems"][row]["metrics"]["N@5"], 4)
    off = run_eval(rerank_run, dataclasses.replace(cfg, fusion_val_lists=0), llm_rows_too=False)
    assert row not in off and SAME_LISTS_ROW not in off and llm_row in off


def test_unscored_val_lists_carry_missing_llm_scores():
    import math

    import pandas as pd

    from gr2.eval.fusion import with_missing_llm_scores

    lists = pd.DataFrame({"example_id": ["val-0", "val-1"], "candidates": [[1, 2, 3], [4, 5, 6]]})
    out = with_missing_llm_scores(lists, {"val-1": [0.5, -1.0, -2.0]})
    assert out["llm_scores"][1] == [0.5, -1.0, -2.0]
    assert len(out["llm_scores"][0]) == 3 and all(math.isnan(x) for x in out["llm_scores"][0])
