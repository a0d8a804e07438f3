"""The pipeline on a tiny generic data set: artifacts, resume, config change, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gr2.cli import main
from gr2.config import load_config
from gr2.pipeline import run_pipeline

STAGES = ["data", "candidates", "eval"]
TINY = [
    "data.k_core=2", "candidates.params.sasrec.max_epochs=2", "candidates.params.sasrec.hidden=16",
    "candidates.params.sasrec.progress=false", "candidates.keep_missed=true", "eval.bootstrap=50",
    "eval.lambdamart_params.cv_folds=0", "eval.lambdamart_params.n_estimators=20",
]


def _cfg(data_dir: Path, *extra: str):
    return load_config(None, [*TINY, *extra], base={"data": {"dataset": str(data_dir)}})


def test_artifacts_contract(generic_dir: Path, tmp_path: Path):
    run = run_pipeline(tmp_path / "run", _cfg(generic_dir), stages=STAGES)
    stats = json.loads((run.path / "data/stats.json").read_text())
    assert {"users", "items", "interactions", "avg_history_len", "filtering"} <= set(stats)
    for split in ("train", "val", "test"):
        df = pd.read_parquet(run.path / f"candidates/{split}.parquet")
        assert list(df.columns) == ["example_id", "user_id", "history", "candidates", "scores",
                                    "labels", "target", "split", "position", "fold"]
        assert (df["split"] == split).all() and df["example_id"].is_unique
        for hist, cands, labels, target in zip(df.history, df.candidates, df.labels, df.target):
            assert len(cands) == 10 and len(set(cands)) == 10
            assert not set(hist) & set(cands), "pre-rankers must not propose seen items"
            assert list(labels) == [int(c == target) for c in cands]
    results = json.loads((run.path / "eval/results.json").read_text())
    systems = results["systems"]
    assert {"pre-rank order", "random order", "popularity order", "oracle", "LambdaMART (val-trained)"} <= set(systems)
    assert (run.path / "eval/lambdamart/model/model.txt").exists()
    assert json.loads((run.path / "eval/lambdamart/importances.json").read_text())
    assert systems["oracle"]["metrics"]["R@10"] >= systems["pre-rank order"]["metrics"]["R@10"]
    assert "| pre-rank order |" in (run.path / "eval/results.md").read_text()
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert all(manifest["stages"][s]["status"] == "done" for s in STAGES)
    assert manifest["config"]["data"]["dataset"] == str(generic_dir)


def test_resume_skips_done_stages_and_reruns_changed_ones(generic_dir: Path, tmp_path: Path):
    cfg = _cfg(generic_dir)
    run = run_pipeline(tmp_path / "run", cfg, stages=STAGES)
    first = json.loads((run.path / "manifest.json").read_text())["stages"]
    run_pipeline(tmp_path / "run", cfg, stages=STAGES)
    second = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert all(first[s]["finished"] == second[s]["finished"] for s in STAGES)

    # an interrupted candidates stage (status running, outputs half there) is redone
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["stages"]["candidates"]["status"] = "running"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    (run.path / "candidates/test.parquet").unlink()
    run_pipeline(tmp_path / "run", cfg, stages=STAGES)
    third = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert third["data"]["finished"] == first["data"]["finished"]
    assert (run.path / "candidates/test.parquet").exists()

    # changing an eval field reruns eval only
    run_pipeline(tmp_path / "run", _cfg(generic_dir, "eval.seed=3"), stages=STAGES)
    fourth = json.loads((run.path / "manifest.json").read_text())["stages"]
    assert fourth["candidates"]["finished"] == third["candidates"]["finished"]
    assert fourth["eval"]["fingerprint"] != third["eval"]["fingerprint"]


def test_stage_needs_its_upstream(generic_dir: Path, tmp_path: Path):
    with pytest.raises(RuntimeError, match="gr2 data"):
        run_pipeline(tmp_path / "run", _cfg(generic_dir), stages=["candidates"])


def test_cli_runs_stages_and_reports_errors(generic_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli-run"
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["data", "--run-dir", str(out), "--profile", "tiny", "--dataset", str(generic_dir), *sets]) == 0
    # later stage commands reuse the run's own config.yaml
    assert main(["candidates", "--run-dir", str(out), "--prerank", "popularity"]) == 0
    assert main(["eval", "--run-dir", str(out)]) == 0
    assert "| oracle |" in capsys.readouterr().out
    assert main(["data", "--run-dir", str(out), "--dataset", str(tmp_path / "missing")]) == 2
    assert "unknown dataset" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "data", "sid", "candidates", "eval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--run-dir" in capsys.readouterr().out


def test_a_stage_killed_half_way_leaves_no_results_that_look_current(generic_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    import gr2.eval.stage

    cfg = _cfg(generic_dir)
    run = run_pipeline(tmp_path / "run", cfg, stages=STAGES)
    before = (run.path / "eval/results.md").read_text()
    assert (run.path / "report.md").exists()

    def killed(run_dir, section):
        (run_dir.path / "eval" / "half.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gr2.eval.stage, "run_eval", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path / "run", cfg, stages=["eval"], force=["eval"])
    for rel in ("eval/results.md", "eval/results.json", "report.md"):
        assert not (run.path / rel).exists() and (run.path / f"{rel}.stale").exists()
    assert (run.path / "eval/results.md.stale").read_text() == before
    assert json.loads((run.path / "manifest.json").read_text())["stages"]["eval"]["status"] == "failed"

    monkeypatch.undo()
    run_pipeline(tmp_path / "run", cfg, stages=["eval"])
    for rel in ("eval/results.md", "eval/results.json", "report.md"):
        assert (run.path / rel).exists() and not (run.path / f"{rel}.stale").exists()


def test_outputs_a_stage_resumes_from_stay_in_place():
    from gr2.stages import STAGES as ALL

    resumed = {s.name: s.resumes for s in ALL if s.resumes}
    assert resumed == {"traces": ("traces/samples.jsonl",), "rl": ("rl/log.jsonl",)}
    assert all(set(s.resumes) <= set(s.outputs) for s in ALL)


def test_checkpoints_of_another_config_are_not_resumed(tmp_path):
    """A stage killed (or kept with keep_checkpoints) under one config leaves checkpoints; started
    again with another config, or forced, it must start fresh, not continue the other model."""
    from gr2.pipeline import discard_checkpoints
    from gr2.runs import RunDir
    from gr2.stages import get_stage

    run = RunDir(tmp_path / "run")
    sft = get_stage("sft")
    ckpt = run.path / "sft" / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    assert discard_checkpoints(run, sft, "fp-a", force=False) == [], "no attempt recorded: nothing to compare"
    run.mark_running("sft", "fp-a")
    assert discard_checkpoints(run, sft, "fp-a", force=False) == [] and ckpt.exists(), "same config: resume"
    assert discard_checkpoints(run, sft, "fp-b", force=False) == [run.path / "sft" / "checkpoints"]
    assert not (run.path / "sft" / "checkpoints").exists()
    ckpt.mkdir(parents=True)
    assert discard_checkpoints(run, sft, "fp-a", force=True) and not ckpt.exists(), "--force starts fresh"


def test_the_processes_that_run_a_stage_are_declared_and_a_single_process_stage_is_refused(
        tmp_path: Path, monkeypatch, capsys):
    """Under ``accelerate launch``: the training stages run in every process, the rest on the main one;
    ``rating`` trains in one process and is refused (by the pipeline and, exit code 2, the command line)."""
    from gr2.checks import ConfigError
    from gr2.pipeline import dist, run_stage
    from gr2.runs import RunDir
    from gr2.stages import RATING, SLATE_STAGES, STAGES, Stage

    every = {s.name for s in (*STAGES, RATING, *SLATE_STAGES.values()) if s.processes == "every"}
    one = {s.name for s in (*STAGES, RATING, *SLATE_STAGES.values()) if s.processes == "one"}
    assert (every, one) == ({"midtrain", "sft", "rl"}, {"rating"})
    with pytest.raises(ValueError, match="processes"):
        Stage("x", "m:f", "x", (), (), processes="all")  # type: ignore[arg-type]

    monkeypatch.setattr(dist, "is_distributed", lambda: True)  # the main process of several, no process group
    monkeypatch.setattr(dist, "is_main", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(RunDir, "is_complete", lambda self, name, fp=None: name != "rating")
    message = "the rating stage trains in one process: run it without `accelerate launch`"
    cfg = load_config(None, base={"task": "rating"})
    with pytest.raises(ConfigError) as refused:
        run_stage(RunDir(tmp_path / "run"), cfg, "rating")
    assert str(refused.value) == message
    assert main(["rating", "--run-dir", str(tmp_path / "cli"), "--task", "rating", "--profile", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == f"gr2: error: {message}"
