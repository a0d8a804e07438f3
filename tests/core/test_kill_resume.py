"""A run killed at a random point of any stage resumes to the same results (issue #19).

``gr2 run`` runs the tiny pipeline (tests/tiny_run.py) in a child process, which gets SIGKILL — no
clean-up, as when a machine loses power — at a random moment while a chosen stage is running (the
manifest says so); the same command is then run to the end. Nothing may be lost or look current when
it is not: every stage is done, no output set aside as ``.stale`` is left, the deterministic stages'
files equal an uninterrupted run's, and the results table has the same rows and numbers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm
from conftest import write_generic
from tiny_run import tiny_overrides

from gr2.config import load_config, save_config
from gr2.stages import STAGE_NAMES

#: Stages whose files depend on the data and seeds only (no training): compared file by file.
DETERMINISTIC = {"data": ["data/items.parquet", "data/interactions.parquet"], "sid": ["sid/sids.parquet"],
                 "candidates": ["candidates/train.parquet", "candidates/val.parquet", "candidates/test.parquet"]}
#: The default test run kills these; ``-m slow`` kills every stage.
FAST = {"midtrain", "sft", "eval"}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("kill")
    student = tiny_llm.save_student(tmp / "student")
    cfg = load_config(None, tiny_overrides(student),
                      base={"data": {"dataset": str(write_generic(tmp / "mydata"))}})
    save_config(cfg, tmp / "config.yaml")
    return tmp / "config.yaml"


def gr2_run(config: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from gr2.cli import main; sys.exit(main(sys.argv[1:]))",
               "run", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny matrices: extra threads only contend
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def stages(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["stages"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):  # not written yet, or being replaced
        return {}


@pytest.fixture(scope="module")
def reference(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the same config."""
    out = tmp_path_factory.mktemp("reference") / "run"
    finish(gr2_run(config_file, out))
    return out


def kill_during(config: Path, out: Path, stage: str, seconds: float, rng: random.Random) -> str:
    """Start ``gr2 run``; SIGKILL it a random time (up to ``seconds``) after ``stage`` starts. Returns
    where the kill landed (for the failure message)."""
    proc = gr2_run(config, out)
    while stages(out).get(stage, {}).get("status") != "running":
        if proc.poll() is not None:
            pytest.fail(f"gr2 run ended before stage {stage} started: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    delay = rng.uniform(0, seconds)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"{delay:.2f} s into {stage} (status then: {stages(out).get(stage, {}).get('status')})"


def eval_rows(out: Path) -> dict:
    results = json.loads((out / "eval/results.json").read_text())
    return {name: row["metrics"] for name, row in results["systems"].items()}


@pytest.mark.parametrize("stage", [pytest.param(s, marks=() if s in FAST else pytest.mark.slow) for s in STAGE_NAMES])
def test_a_run_killed_during_a_stage_resumes_to_the_same_results(stage, config_file, reference, tmp_path):
    seed = random.randrange(2**32)
    out = tmp_path / "run"
    seconds = json.loads((reference / "manifest.json").read_text())["stages"][stage]["seconds"]
    where = kill_during(config_file, out, stage, seconds, random.Random(seed))
    context = f"killed {where}; seed {seed}"

    finish(gr2_run(config_file, out))
    done = stages(out)
    assert {s: done[s]["status"] for s in STAGE_NAMES} == dict.fromkeys(STAGE_NAMES, "done"), context
    assert not list(out.rglob("*.stale")), context
    for files in DETERMINISTIC.values():
        for rel in files:
            pd.testing.assert_frame_equal(pd.read_parquet(out / rel), pd.read_parquet(reference / rel), obj=rel)
    got, want = eval_rows(out), eval_rows(reference)
    assert sorted(got) == sorted(want), context
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-6, nan_ok=True), (name, context)
