from __future__ import annotations

import os

import pandas as pd
import pytest

from gr2.runs import (
    RunDir,
    atomic_path,
    atomic_write_json,
    atomic_write_parquet,
    read_json,
)


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_path_for_folders(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(b"1")
    assert (target / "weights.bin").read_bytes() == b"1"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        raise RuntimeError("killed")
    assert (target / "weights.bin").exists()
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_stage_complete_needs_status_fingerprint_and_outputs(tmp_path):
    run = RunDir(tmp_path)
    out = run.stage_dir("data") / "items.parquet"
    run.mark_running("data", "fp1")
    assert not run.is_complete("data", "fp1")
    atomic_write_parquet(out, pd.DataFrame({"a": [1]}))
    run.mark_done("data", ["data/items.parquet"], 1.0)
    assert run.is_complete("data", "fp1")
    assert not run.is_complete("data", "fp2")
    out.unlink()
    assert not run.is_complete("data", "fp1")
    with pytest.raises(RuntimeError, match="do not exist"):
        run.mark_done("data", ["data/items.parquet"], 1.0)


def test_missing_artifact_names_the_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="gr2 candidates"):
        RunDir(tmp_path).file("candidates", "test.parquet")
