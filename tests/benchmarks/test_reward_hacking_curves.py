"""benchmarks/reward_hacking_curves.py end to end on the tiny run: two DAPO steps per free arm with
validation N@5, then the figure and table, then a re-plot from the logs alone; a constrained arm
whose rollouts are all valid."""

from __future__ import annotations

import shutil

import pytest

from .conftest import PROMPT_OVERRIDE, load_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_trains_both_free_rewards_then_replots(tiny_rl_run, tmp_path):
    run_dir, model_dir = tiny_rl_run
    shutil.copy(run_dir / "candidates/train.parquet", run_dir / "candidates/val.parquet")
    out = tmp_path / "hacking"
    script = load_script("reward_hacking_curves")
    data = script.main([
        "--run-dir", str(run_dir), "--model", str(model_dir), "--out", str(out), "--steps", "2",
        "--num-generations", "2", "--max-completion-length", "6", "--batch-size", "2", "--threads", "1",
        "--val-lists", "2", "--val-every", "1", "--set", PROMPT_OVERRIDE, "--set", "rl.max_resample_rounds=0",
        "--rewards", "naive", "conditional"])

    assert set(data) == {"naive", "conditional"}
    for reward, d in data.items():
        assert sorted(d["train"]) == [1, 2], reward
        assert sorted(d["val"]) == [0, 1, 2], reward
        line = d["train"][2]
        for key in ("rl/copy_prerank_rate", "rl/copy_shown_rate", "reward", "rl/valid_rate"):
            assert line[key] is not None, key
        assert 0 <= d["val"][0]["val/N@5"] <= 1
        assert (out / reward / "model" / "config.json").exists()
    png = out / "reward_hacking.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "reward_hacking.md").read_text()
    assert "naive copy pre-rank" in table and "conditional val N@5" in table
    assert len(table.splitlines()) == 2 + 3  # header, rule, steps 0..2

    png.unlink()
    again = script.main(["--out", str(out), "--plot-only", "--rewards", "naive", "conditional"])
    assert again == data and png.exists()
    assert (out / "reward_hacking.md").read_text() == table


def test_a_constrained_arm_samples_only_valid_rankings(tiny_rl_run, tmp_path):
    run_dir, model_dir = tiny_rl_run
    out = tmp_path / "hacking"
    script = load_script("reward_hacking_curves")
    data = script.main([
        "--run-dir", str(run_dir), "--model", str(model_dir), "--out", str(out), "--steps", "2",
        "--num-generations", "2", "--max-completion-length", "128", "--no-reasoning", "--batch-size", "2",
        "--threads", "1", "--set", PROMPT_OVERRIDE, "--set", "rl.max_resample_rounds=0",
        "--rewards", "conditional-constrained"])
    train = data["conditional-constrained"]["train"]
    assert sorted(train) == [1, 2] and all(line["rl/valid_rate"] == 1.0 for line in train.values())
    assert "conditional-constrained valid" in (out / "reward_hacking.md").read_text()
    assert script.arm_label("conditional-constrained") == "conditional, constrained"
    with pytest.raises(SystemExit, match="not a reward"):
        script.main(["--out", str(out), "--plot-only", "--rewards", "conditional-constrianed"])
