"""benchmarks/run_budget.py on the tiny run: every stage inside a generous budget, then a budget that
runs out in the first stage it has to train — the finished stages stay, the summary says what happened."""

from __future__ import annotations

import json
from pathlib import Path

import tiny_llm
from conftest import write_generic
from tiny_run import tiny_overrides

from gr2.config import load_config, save_config
from gr2.stages import STAGE_NAMES

from .conftest import load_script


def tiny_config(tmp_path: Path) -> Path:
    student = tiny_llm.save_student(tmp_path / "student")
    cfg = load_config(None, tiny_overrides(student), base={"data": {"dataset": str(write_generic(tmp_path / "d"))}})
    save_config(cfg, tmp_path / "config.yaml")
    return tmp_path / "config.yaml"


def test_budget_run_keeps_finished_stages_and_summarises(tmp_path):
    script = load_script("run_budget")
    config, out = tiny_config(tmp_path), tmp_path / "run"

    assert script.main(["--out", str(out), "--budget-s", "600", "--config", str(config),
                        "--stages", "data", "sid", "candidates"]) == 0
    summary = json.loads((out / "budget_summary.json").read_text())
    assert {s: r["status"] for s, r in summary["stages"].items()} == dict.fromkeys(["data", "sid", "candidates"], "done")
    assert summary["stages"]["data"]["summary"], "the manifest's summary of each stage"

    # the three stages are complete: skipped; the budget ends before midtrain can finish, and
    # nothing after it starts
    assert script.main(["--out", str(out), "--budget-s", "0.5", "--config", str(config)]) == 3
    summary = json.loads((out / "budget_summary.json").read_text())
    status = {s: r["status"] for s, r in summary["stages"].items()}
    assert list(status) == list(STAGE_NAMES)
    assert status["data"] == status["sid"] == status["candidates"] == "skipped"
    assert status["midtrain"] in ("not started", "out of time")
    assert {status[s] for s in STAGE_NAMES[4:]} == {"not started"}
    assert summary["results_n5"] == {} and "stderr" in summary


def test_a_stage_running_when_the_budget_ends_is_out_of_time(tmp_path):
    script = load_script("run_budget")
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {
        "data": {"status": "done", "finished": "t0", "seconds": 1.0},
        "sid": {"status": "done", "finished": "t2", "seconds": 2.0},
        "candidates": {"status": "running"}}}))
    rows = script.stage_rows(tmp_path, ["data", "sid", "candidates", "midtrain"], {"data": "t0", "sid": "t1"},
                             in_time=False)
    assert {s: r["status"] for s, r in rows.items()} == {
        "data": "skipped", "sid": "done", "candidates": "out of time", "midtrain": "not started"}
    rows = script.stage_rows(tmp_path, ["candidates"], {}, in_time=True)
    assert rows["candidates"]["status"] == "failed", "a stage left running by a child that ended in time"
