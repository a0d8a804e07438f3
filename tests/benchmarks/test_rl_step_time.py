"""benchmarks/rl_step_time.py end to end on the tiny run: one DAPO step per G, timed by parts."""

from __future__ import annotations

import json

import pytest

from .conftest import PROMPT_OVERRIDE, load_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parts_sum_to_the_step(tiny_rl_run, tmp_path):
    run_dir, model_dir = tiny_rl_run
    out = tmp_path / "step_time.json"
    report = load_script("rl_step_time").main([
        "--run-dir", str(run_dir), "--model", str(model_dir), "--steps", "1", "--num-generations", "2", "4",
        "--max-completion-length", "6", "--batch-size", "2", "--threads", "1", "--set", PROMPT_OVERRIDE,
        "--out", str(out)])

    assert json.loads(out.read_text())["results"] == json.loads(json.dumps(report["results"]))
    assert [r["num_generations"] for r in report["results"]] == [2, 4]
    assert report["machine"]["torch_threads"] == 1 and report["machine"]["date"]
    for res in report["results"]:
        (step,) = res["steps"]
        parts = step["generation"] + step["reward"] + step["optimisation"]
        assert step["step"] == pytest.approx(parts)
        assert min(step["generation"], step["reward"], step["optimisation"]) >= 0
        assert step["generation"] > 0 and step["rounds"] >= 1
        assert step["completions"] == 2 * res["num_generations"] * step["rounds"]
        assert 0 < step["completion_tokens_mean"] <= 6
