"""The candidates stage: training-list sampling after the target filter, the LLM pre-ranker
(`--prerank llm`) and `gr2 eval retrieval` on a tiny run with a tiny random llama."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny_llm

from gr2.candidates.stage import sample_lists
from gr2.cli import main
from gr2.config import load_config
from gr2.eval.retrieval import run_retrieval_eval
from gr2.llm.vocab import add_sid_tokens
from gr2.pipeline import run_pipeline
from gr2.prompts.sids import render_sid
from gr2.runs import RunDir, model_source

TINY = ["data.k_core=2", "candidates.params.sasrec.max_epochs=2", "candidates.params.sasrec.hidden=16",
        "candidates.params.sasrec.progress=false"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_lists_is_seeded_and_keeps_order():
    df = pd.DataFrame({"example_id": [f"e{i}" for i in range(20)]})
    a, b = sample_lists(df, 5, seed=3), sample_lists(df, 5, seed=3)
    assert len(a) == 5 and a.equals(b)
    assert list(a["example_id"]) == sorted(a["example_id"], key=lambda s: int(s[1:]))
    assert sample_lists(df, None, 0) is df and sample_lists(df, 50, 0) is df


def test_n_train_examples_counts_kept_lists(generic_dir: Path, tmp_path: Path):
    cfg = load_config(None, [*TINY, "candidates.prerank=cooc", "candidates.n_train_examples=4"],
                      base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg, stages=["data", "candidates"])
    train = pd.read_parquet(run.path / "candidates/train.parquet")
    assert len(train) == 4, "n_train_examples is the number of lists kept, not of users sampled"
    assert all(1 in list(labels) for labels in train["labels"])
    report = json.loads((run.path / "candidates/prerank.json").read_text())
    assert report["splits"]["train"]["kept"] == 4 and report["splits"]["train"]["lists"] > 4


def test_k_larger_than_the_catalogue_is_a_one_line_error(generic_dir: Path, tmp_path: Path, capsys):
    args = ["--dataset", str(generic_dir), *[x for o in TINY for x in ("--set", o)]]
    assert main(["data", "--run-dir", str(tmp_path / "run"), *args]) == 0
    assert main(["candidates", "--run-dir", str(tmp_path / "run"), *args, "--set", "candidates.k=5000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gr2: error: candidates: k=5000 is more than the catalogue's") and "items" in err


def _tiny_llm_run(generic_dir: Path, tmp_path: Path) -> RunDir:
    """data stage + a hand-made SID table + a tiny 'mid-trained' model in midtrain/model."""
    cfg = load_config(None, TINY, base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg, stages=["data"])
    n_items = json.loads((run.path / "data/stats.json").read_text())["items"]
    codes = list(itertools.product(range(4), repeat=4))[:n_items]
    sid_dir = run.stage_dir("sid")
    pd.DataFrame({"item_id": np.arange(n_items), "codes": [list(c) for c in codes],
                  "sid": [render_sid(c) for c in codes]}).to_parquet(sid_dir / "sids.parquet")
    tok = tiny_llm.make_tokenizer(["Items a user bought, oldest first: Next item:"] * 3, vocab_size=300)
    model = tiny_llm.make_model(len(tok))
    add_sid_tokens(model, tok, levels=4, codebook_size=4)
    model.save_pretrained(run.path / "midtrain/model")
    tok.save_pretrained(run.path / "midtrain/model")
    return run


def test_llm_preranker_lists_and_retrieval_eval(generic_dir: Path, tmp_path: Path, capsys):
    run = _tiny_llm_run(generic_dir, tmp_path)
    cfg = load_config(None, [*TINY, "candidates.prerank=llm", "candidates.n_eval_examples=3",
                             "candidates.train_prerank=popularity", "candidates.keep_missed=true",
                             "candidates.params.llm.batch_size=3"],
                      base={"data": {"dataset": str(generic_dir)}})
    from gr2.candidates.stage import run_candidates

    run_candidates(run, cfg.candidates)
    report = json.loads((run.path / "candidates/prerank.json").read_text())
    assert report["prerank"] == "llm" and report["train_prerank"] == "popularity"
    val, test = (pd.read_parquet(run.path / f"candidates/{s}.parquet") for s in ("val", "test"))
    assert len(val) == len(test) == 3 and list(val["user_id"]) == list(test["user_id"])
    for hist, cands, scores in zip(test.history, test.candidates, test.scores):
        assert len(set(cands)) == 10 and not set(hist) & set(cands)
        assert np.all(np.isfinite(scores)) and list(scores) == sorted(scores, reverse=True)

    out = run_retrieval_eval(run, "midtrain", split="test", sample=4, num_beams=10, batch_size=4)
    assert out["n_users"] == 4 and set(out["systems"]) == {"popularity", "cooc", "LLM beam (midtrain)"}
    for metrics in out["systems"].values():
        assert 0 <= metrics["N@5"] <= metrics["R@5"] <= metrics["R@10"] <= 1
    assert "| LLM beam (midtrain) |" in (run.path / "eval/retrieval-test.md").read_text()

    assert main(["eval", "retrieval", "--run-dir", str(run.path), "--sample", "2", "--split", "val"]) == 0
    assert json.loads((run.path / "eval/retrieval-val.json").read_text())["n_users"] == 2

    # the same tiny model as a re-ranker: its garbage is repaired to the input order, row added
    argv = ["eval", "rerank", "--run-dir", str(run.path), "--model", "midtrain", "--name", "tiny",
            "--sample", "2", "--set", "eval.lambdamart=false", "--set", "eval.llm_max_new_tokens=8",
            "--set", "eval.bootstrap=20"]
    assert main(argv) == 0
    system = json.loads((run.path / "eval/systems/tiny.json").read_text())
    assert system["summary"]["n_lists"] == 2 and len(system["orders"]) == 2
    assert "tiny" in (run.path / "eval/results.md").read_text()


def test_llm_preranker_needs_a_model(generic_dir: Path, tmp_path: Path):
    cfg = load_config(None, [*TINY, "candidates.prerank=llm"], base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg, stages=["data"])
    from gr2.candidates.stage import run_candidates

    with pytest.raises(FileNotFoundError, match="gr2 sid"):
        run_candidates(run, cfg.candidates)
    with pytest.raises(FileNotFoundError, match="gr2 sft"):
        model_source(run, "sft")
    assert model_source(run, "smollm2-135m") == "smollm2-135m"
