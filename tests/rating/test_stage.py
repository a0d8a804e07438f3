"""`gr2 run --task rating` end to end on a tiny synthetic ratings dataset (no download) with a tiny
random llama: data → rating, the artifacts, the report, resuming, and the task's stage list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm
from conftest import torch_threads

from gr2.checks import ConfigError
from gr2.config import load_config
from gr2.pipeline import run_pipeline
from gr2.prompts.rating import STATUSES, rating_messages
from gr2.stages import TASKS, get_stage

N_USERS, N_ITEMS, PER_USER = 24, 12, 7


def write_ratings(folder: Path) -> Path:
    """User u rates items u, u+1, ... (mod N_ITEMS) in that order; rating (u + i) % 5 + 1."""
    folder.mkdir(parents=True)
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + t) % N_ITEMS}", "timestamp": 1000 * u + t,
             "rating": (u + (u + t) % N_ITEMS) % 5 + 1} for u in range(N_USERS) for t in range(PER_USER)]
    pd.DataFrame(rows).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "title": [f"Film {i}" for i in range(N_ITEMS)],
                  "categories": [f"Drama > Kind {i % 3}" for i in range(N_ITEMS)]}).to_csv(folder / "items.csv",
                                                                                        index=False)
    return folder


def save_student(folder: Path) -> Path:
    """A tiny llama whose tokenizer knows the prompt's words (short prompts in tokens)."""
    prompt = rating_messages([("Film 1", ["Drama", "Kind 1"], 4.0)], ("Film 2", ["Drama"]))
    tok = tiny_llm.make_tokenizer([m["content"] for m in prompt] * 3, vocab_size=400)
    tiny_llm.make_model(len(tok), max_positions=2048).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rating_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("rating")
    overrides = [f"rating.model={save_student(tmp / 'student')}", "rating.eval_examples=6", "rating.train_examples=8",
                 "rating.steps=1", "rating.batch_size=2", "rating.num_generations=2", "rating.max_history=3",
                 "rating.max_completion_length=12", "rating.max_resample_rounds=0", "rating.eval_batch_size=6",
                 "rating.mf_factors=4", "rating.mf_epochs=2", "rating.bootstrap=50"]
    cfg = load_config(None, overrides, base={"task": "rating", "data": {"dataset": str(write_ratings(tmp / "data"))}})
    with torch_threads(1):
        return run_pipeline(tmp / "run", cfg), cfg


def test_data_then_rating_and_nothing_else(rating_run):
    run, _ = rating_run
    stages = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert set(stages) == {"data", "rating"} and all(s["status"] == "done" for s in stages.values())
    for out in get_stage("rating").outputs:
        assert (run.path / out).is_file(), out
    inter = pd.read_parquet(run.path / "data/interactions.parquet")
    assert inter["rating"].between(1, 5).all()  # the data stage keeps the ratings


def test_results_have_every_row_with_intervals_and_the_answers(rating_run):
    run, _ = rating_run
    r = json.loads((run.path / "rating/results.json").read_text())
    assert r["users"] == N_USERS and r["sample"] == 6 and r["rl"]["global_step"] == 1
    baselines = {"global mean", "item mean", "matrix factorisation (SVD)"}
    llm = {"student zero-shot", "student after pure RL"}
    assert set(r["systems"]) == baselines | llm and set(r["llm"]) == llm
    for name, s in r["systems"].items():
        assert set(s) == ({"all", "sample"} if name in baselines else {"sample"})
        m = s["sample"]
        assert m["n"] == 6 and m["rmse_lo"] <= m["rmse"] <= m["rmse_hi"] and m["mae_lo"] <= m["mae"] <= m["mae_hi"]
    for row in r["llm"].values():
        assert sum(row["statuses"].values()) == 6 and set(row["statuses"]) <= set(STATUSES)
        assert 0 <= row["format_rate"] <= row["rated_rate"] <= 1
    answers = [json.loads(x) for x in (run.path / "rating/outputs/student-zero-shot.jsonl").read_text().splitlines()]
    assert len(answers) == 6 and {"user", "item", "true", "status", "rating", "answer"} <= set(answers[0])
    md = (run.path / "rating/results.md").read_text()
    assert f"all {N_USERS} users" in md and "LLM sample (6 users)" in md and "student after pure RL" in md


def test_report_has_the_rating_section_and_no_reranking_stage(rating_run):
    report = (rating_run[0].path / "report.md").read_text()
    assert "## Rating prediction" in report and "#### Baselines" in report
    assert "## Semantic IDs" not in report and "## Results" not in report


def test_a_second_run_redoes_nothing_and_stages_outside_the_task_are_refused(rating_run, tmp_path):
    run, cfg = rating_run
    finished = json.loads((run.path / "manifest.json").read_text())["stages"]["rating"]["finished"]
    run_pipeline(run.path, cfg)
    assert json.loads((run.path / "manifest.json").read_text())["stages"]["rating"]["finished"] == finished
    assert TASKS["rating"] == ("data", "rating")
    with pytest.raises(ConfigError, match="not part of task 'rerank'"):
        run_pipeline(tmp_path / "other", load_config(None), stages=["rating"])
    with pytest.raises(ConfigError, match="not part of task 'rating'"):
        run_pipeline(tmp_path / "other", cfg, stages=["sid"])


def test_a_re_run_reads_the_zero_shot_answers_back_unless_what_decides_them_changed(rating_run, tmp_path,
                                                                                   monkeypatch):
    from gr2.rating import llm

    run, cfg = rating_run
    copy = tmp_path / "run"  # the module's run stays as the other tests read it
    shutil.copytree(run.path, copy, symlinks=True)
    assert json.loads((copy / "rating/zero_shot.json").read_text())["key"]
    before = (copy / "rating/outputs/student-zero-shot.jsonl").read_text()
    generated = []
    real = llm.answers

    def counted(model, tokenizer, texts, c):
        generated.append(len(texts))
        return real(model, tokenizer, texts, c)

    monkeypatch.setattr(llm, "answers", counted)
    with torch_threads(1):
        run_pipeline(copy, cfg, force=["rating"])
    assert generated == [6], "only the answers after RL are generated; the zero-shot ones are read back"
    assert (copy / "rating/outputs/student-zero-shot.jsonl").read_text() == before
    generated.clear()
    with torch_threads(1):  # another generation setting: the zero-shot answers are made again
        run_pipeline(copy, load_config(copy / "config.yaml", ["rating.eval_batch_size=3"]))
    assert generated == [6, 6]
