"""`run_pipeline(..., reuse=BASE)` / `gr2 run --reuse BASE`: stages with the base's fingerprint are
linked, the others run, and the base run is never written through a link (gr2.reuse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gr2.cli import main
from gr2.config import load_config
from gr2.pipeline import reusable, run_pipeline
from gr2.reuse import detach
from gr2.runs import RunDir
from gr2.stages import get_stage

STAGES = ["data", "candidates", "eval"]
CHEAP = ["data.k_core=2", "candidates.prerank=popularity", "eval.bootstrap=20", "eval.lambdamart=false"]


def _cfg(data_dir: Path, *extra: str):
    return load_config(None, [*CHEAP, *extra], base={"data": {"dataset": str(data_dir)}})


def _stages(run: RunDir) -> dict:
    return json.loads(run.manifest_path.read_text())["stages"]


def _files(path: Path) -> dict[str, bytes]:
    """Every file of a run directory with its content, manifest included."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def base(generic_dir: Path, tmp_path: Path) -> RunDir:
    return run_pipeline(tmp_path / "base", _cfg(generic_dir), stages=STAGES)


def test_same_fingerprint_is_linked_changed_stage_runs_and_base_is_untouched(base, generic_dir, tmp_path):
    before = _files(base.path)
    child = run_pipeline(tmp_path / "child", _cfg(generic_dir, "eval.seed=3"), stages=STAGES, reuse=base.path)
    stages, base_stages = _stages(child), _stages(base)
    for name in ("data", "candidates"):
        assert (child.path / name).is_symlink() and (child.path / name / "stats.json" if name == "data" else
                                                     child.path / name / "test.parquet").exists()
        assert stages[name]["reused_from"] == str(base.path.resolve())
        assert stages[name]["finished"] == base_stages[name]["finished"], "linked, not recomputed"
    assert not (child.path / "eval").is_symlink() and "reused_from" not in stages["eval"]
    assert stages["eval"]["fingerprint"] != base_stages["eval"]["fingerprint"]

    # a later re-run of the child with another candidates config: that stage gets a folder of its own
    run_pipeline(child.path, _cfg(generic_dir, "eval.seed=3", "candidates.k=5"), stages=STAGES, reuse=base.path)
    stages = _stages(child)
    assert (child.path / "data").is_symlink() and not (child.path / "candidates").is_symlink()
    assert "reused_from" not in stages["candidates"]
    assert json.loads((child.path / "candidates" / "prerank.json").read_text())["k"] == 5
    assert _files(base.path) == before, "the child wrote into the base run"


def test_a_link_to_a_stage_the_base_has_since_remade_differently_is_stale(base, generic_dir, tmp_path):
    child = run_pipeline(tmp_path / "child", _cfg(generic_dir), stages=STAGES, reuse=base.path)
    fp = _stages(child)["candidates"]["fingerprint"]
    assert child.is_complete("candidates", fp)
    run_pipeline(base.path, _cfg(generic_dir, "candidates.k=5"), stages=STAGES)
    assert not child.is_complete("candidates", fp), "the link now shows files made with another config"
    run_pipeline(child.path, _cfg(generic_dir), stages=STAGES, reuse=base.path)
    assert not (child.path / "candidates").is_symlink(), "re-made in the child, where the base no longer has it"
    assert json.loads((child.path / "candidates" / "prerank.json").read_text())["k"] == 10
    assert json.loads((base.path / "candidates" / "prerank.json").read_text())["k"] == 5


def test_identical_config_links_everything_and_forced_stage_runs_apart(base, generic_dir, tmp_path):
    before = _files(base.path)
    child = run_pipeline(tmp_path / "child", _cfg(generic_dir), stages=STAGES, reuse=base.path)
    assert all((child.path / s).is_symlink() for s in STAGES)
    run_pipeline(child.path, _cfg(generic_dir), stages=STAGES, force=["eval"], reuse=base.path)
    assert not (child.path / "eval").is_symlink() and (child.path / "eval" / "results.json").exists()
    assert _files(base.path) == before


def test_copy_when_symlinks_fail(base, generic_dir, tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OSError("symlinks not allowed here")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    child = run_pipeline(tmp_path / "child", _cfg(generic_dir, "eval.seed=3"), stages=STAGES, reuse=base.path)
    assert not (child.path / "data").is_symlink() and (child.path / "data" / "stats.json").exists()
    assert _stages(child)["data"]["reused_from"] == str(base.path.resolve())


def test_detach_turns_a_link_into_a_copy_before_writing(base, generic_dir, tmp_path):
    child = run_pipeline(tmp_path / "child", _cfg(generic_dir), stages=STAGES, reuse=base.path)
    detach(child, "eval")
    assert not (child.path / "eval").is_symlink()
    assert (child.path / "eval" / "results.json").read_bytes() == (base.path / "eval" / "results.json").read_bytes()
    assert _stages(child)["eval"]["copied_from"] == str(base.path.resolve())
    (child.path / "eval" / "extra.json").write_text("{}")
    assert not (base.path / "eval" / "extra.json").exists()


def test_a_stage_read_only_when_present_must_match_the_base(base, generic_dir, tmp_path):
    """eval scores the run's SFT/RL models without them in its fingerprint: it is linked only when the
    child has the same ones (none here), never when the child has a model the base lacks."""
    cfg = _cfg(generic_dir)
    child = RunDir(tmp_path / "child")
    assert reusable(child, base, cfg, get_stage("eval"))
    child.record_stage("sft", {"status": "done", "outputs": []})
    assert not reusable(child, base, cfg, get_stage("eval"))


def test_cli_reuse_starts_from_the_base_config(base, tmp_path):
    child = tmp_path / "child"
    assert main(["run", "--out", str(child), "--reuse", str(base.path), "--stages", *STAGES,
                 "--set", "eval.seed=3"]) == 0
    assert (child / "candidates").is_symlink(), "the base's config.yaml was the starting point"
    assert main(["run", "--out", str(tmp_path / "self"), "--reuse", str(tmp_path / "nowhere")]) == 2
