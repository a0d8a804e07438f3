"""`gr2 run` through every stage on a tiny slice: data → sid → candidates → midtrain → traces → sft →
rl → eval, with a tiny random llama as the student and the evidence teacher; checks the artifact
contract of every stage (docs/artifacts.md) and that a second run resumes without redoing anything.
Then `gr2 variants` on a copy of that run: the paper's variants trained by reusing its stages, and
their rows in its results table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm
from conftest import torch_threads, write_generic
from tiny_run import tiny_overrides

from gr2.cli import main
from gr2.config import RunConfig, load_config
from gr2.eval.systems import system_path
from gr2.pipeline import run_pipeline
from gr2.runs import RunDir
from gr2.stages import STAGES
from gr2.variants import run_variants


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, RunConfig]:
    """Every stage on a tiny slice, once for the module (the variants test works on a copy)."""
    tmp = tmp_path_factory.mktemp("e2e")
    student = tiny_llm.save_student(tmp / "student")
    cfg = load_config(None, tiny_overrides(student), base={"data": {"dataset": str(write_generic(tmp / "mydata"))}})
    with torch_threads(1):
        return run_pipeline(tmp / "run", cfg), cfg


def table_rows(run_path: Path) -> set[str]:
    results = json.loads((run_path / "eval/results.json").read_text())
    return set(results["systems"]) | set(results.get("subsets", {}))


def test_every_stage_on_a_tiny_slice(tiny_run: tuple[RunDir, RunConfig]):
    run, cfg = tiny_run
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
    rows = table_rows(run.path)
    # rows named by what the models are; each mode, and each with the candidates shown shuffled (the control)
    for system in ("SFT (rejection traces, ", "GR2 (rejection → RL, "):
        assert {f"{system}direct)", f"{system}reasoning)", f"{system}direct, shuffled order shown)",
                f"{system}reasoning, shuffled order shown)"} <= rows
    report = (run.path / "report.md").read_text()
    assert "## Results" in report and "SFT (rejection traces, direct)" in report, "eval writes the run's report"

    finished = {s: v["finished"] for s, v in manifest["stages"].items()}
    run_pipeline(run.path, cfg)  # resumes: nothing is redone
    again = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert {s: v["finished"] for s, v in again.items()} == finished


PINNED = Path(__file__).with_name("tiny_eval_pinned.json")


def eval_numbers(run_path: Path) -> dict[str, dict[str, float]]:
    """Every row's point metrics in ``eval/results.json``: the systems, and each subset's systems."""
    results = json.loads((run_path / "eval/results.json").read_text())
    rows = {name: row["metrics"] for name, row in results["systems"].items()}
    for subset, table in results.get("subsets", {}).items():
        rows |= {f"{subset} / {name}": row["metrics"] for name, row in table["systems"].items()}
    return dict(sorted(rows.items()))


def test_the_tiny_run_gives_the_pinned_eval_numbers(tiny_run: tuple[RunDir, RunConfig]):
    """Refactors move code, not results: the tiny run's table equals the one pinned when the layout changed
    (regenerate the file only for a change meant to move the numbers, and say why in the commit)."""
    got = eval_numbers(tiny_run[0].path)
    pinned = json.loads(PINNED.read_text())
    assert sorted(got) == sorted(pinned), json.dumps(got, indent=1)
    for name, metrics in pinned.items():
        assert got[name] == pytest.approx(metrics, abs=1e-6, nan_ok=True), (name, json.dumps(got, indent=1))


def stage_files(run_path: Path) -> dict[str, int]:
    """``{path: mtime_ns}`` of every file the training stages wrote (what a variant must not touch)."""
    return {str(p.relative_to(run_path)): p.stat().st_mtime_ns
            for stage in STAGES if stage.name != "eval" for p in (run_path / stage.name).rglob("*") if p.is_file()}


@pytest.mark.usefixtures("one_torch_thread")
def test_variants_reuse_the_base_stages_and_add_their_rows(tiny_run: tuple[RunDir, RunConfig], tmp_path: Path,
                                                            capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny_run[0].path, base, symlinks=True)
    untouched = stage_files(base)
    base_stages = json.loads((base / "manifest.json").read_text())["stages"]

    done = run_variants(base)
    assert done["rejection"] is None, "the base samples rejection traces: that variant is the base itself"
    for name, trained in (("targeted", {"traces", "sft", "rl"}), ("reasoning-free", {"rl"}), ("pure-rl", {"rl"}),
                          ("recone", {"sft", "rl"})):
        variant = base / "variants" / name
        assert done[name].path == variant
        stages = json.loads((variant / "manifest.json").read_text())["stages"]
        assert set(stages) == {s.name for s in STAGES} - {"eval"}, "a variant's rows go to the base's table"
        for stage, info in stages.items():
            assert info["status"] == "done"
            if stage in trained:
                assert "reused_from" not in info and not (variant / stage).is_symlink(), (name, stage)
            else:
                assert info["reused_from"] == str(base.resolve()), (name, stage)
                assert (variant / stage).is_symlink() and info["finished"] == base_stages[stage]["finished"]
    assert stage_files(base) == untouched, "training a variant wrote into the base run"

    rows = table_rows(base)
    for system in ("SFT (rejection traces, ", "SFT (targeted traces, ", "GR2 (rejection → RL, ",
                   "targeted → RL (", "reasoning-free GR2 ("):
        assert {f"{system}direct)", f"{system}reasoning, shuffled order shown)"} <= rows, system
    accepted = json.loads((base / "traces/stats.json").read_text())["acceptance"]["accepted"]
    for system in ("pure RL (RecZero-style, ", f"SFT (cold start on {min(64, accepted)} rejection traces, ",
                   f"RecOne (cold-start SFT on {min(64, accepted)} traces → RL, "):
        assert {f"{system}direct)", f"{system}reasoning, shuffled order shown)"} <= rows, system
    pure = json.loads((base / "variants/pure-rl/rl/metrics.json").read_text())
    assert pure["policy"] == str(base / "variants/pure-rl/midtrain/model"), "pure RL starts from the mid-trained model"
    rl_free = json.loads(system_path(RunDir(base), "reasoning-free GR2 (reasoning)").read_text())
    assert rl_free["model"] == "variants/reasoning-free/rl" and rl_free["prompt"]["reasoning"] is False, \
        "each model is prompted in the format its own run trained it on"
    assert json.loads(system_path(RunDir(base), "targeted → RL (reasoning)").read_text())["prompt"]["reasoning"]
    config = (base / "config.yaml").read_text()
    assert "variants/targeted/sft" in config, "gr2 eval --run-dir keeps the variants' rows"

    # again, from the command line: everything is complete, nothing is redone
    finished = {p: json.loads(p.read_text())["stages"] for p in base.glob("**/manifest.json")}
    assert main(["variants", "--run-dir", str(base), "--only", "rejection", "reasoning-free"]) == 0
    out = capsys.readouterr().out
    assert "rejection: skipped, the base run samples rejection traces" in out
    assert "reasoning-free: " in out and "trained: rl;" in out
    assert {p: json.loads(p.read_text())["stages"] for p in base.glob("**/manifest.json")} == finished
