"""``gr2 run --slates``: the data and candidates stages from a slates file, and the CLI wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from slate_files import slate_rows, write_jsonl

from gr2.checks import ConfigError
from gr2.cli import _config, build_parser
from gr2.config import load_config
from gr2.data.stage import load_split
from gr2.pipeline import run_pipeline
from gr2.runs import RunDir


def _run(tmp_path: Path, slates: Path, items: Path, *overrides: str) -> RunDir:
    cfg = load_config(None, list(overrides), base={"slates": {"path": str(slates), "items": str(items)}})
    return run_pipeline(tmp_path / "run", cfg, stages=["data", "candidates"])


def test_data_and_candidates_from_slates(tmp_path, slates_jsonl, items_csv):
    rows = slate_rows(n_users=40, requests=2)  # two requests per user: the later history is longer
    write_jsonl(slates_jsonl, rows)
    run = _run(tmp_path, slates_jsonl, items_csv)

    stats = json.loads((run.path / "data/stats.json").read_text())
    assert stats["users"] == 40 and stats["filtering"]["kept_slates"] == 80
    assert stats["slates"]["train"] + stats["slates"]["val"] + stats["slates"]["test"] == 80
    items = pd.read_parquet(run.path / "data/items.parquet")
    assert items["item_id"].tolist() == list(range(len(items)))
    raw_of = dict(zip(items["item_id"], items["raw_id"]))

    # interactions: each user's earliest history only (later ones may hold earlier slates' clicks)
    inter = pd.read_parquet(run.path / "data/interactions.parquet")
    split = load_split(run)
    assert len(split.sequences) == 40
    by_user = {r["user_id"]: r for r in rows if r["request_id"].endswith("-0")}
    users = inter.drop_duplicates("user_id").set_index("user_id")["raw_user_id"]
    for uid, seq in enumerate(split.sequences):
        assert [raw_of[i] for i in seq] == by_user[users[uid]]["history"]

    lists = {s: pd.read_parquet(run.path / f"candidates/{s}.parquet") for s in ("train", "val", "test")}
    cols = ["example_id", "user_id", "history", "candidates", "scores", "labels", "target", "split"]
    original = {r["request_id"]: r for r in rows}
    seen_users: dict[int, str] = {}
    for name, df in lists.items():
        assert list(df.columns) == cols and len(df) > 0 and (df["split"] == name).all()
        for row in df.itertuples():
            req = original[row.example_id.removeprefix(f"{name}-")]
            assert [raw_of[i] for i in row.candidates] == req["candidates"]      # production order kept
            assert list(row.labels) == req["labels"] and list(row.scores) == req["scores"]
            best = int(np.argmax(row.labels))                                    # first top-graded item
            assert row.target == row.candidates[best] and row.labels[best] == max(row.labels)
            assert seen_users.setdefault(row.user_id, name) == name             # a user sits in one split
    report = json.loads((run.path / "candidates/slates.json").read_text())
    assert report["splits"]["train"]["lists"] == len(lists["train"])


def test_split_column_is_used(tmp_path, slates_jsonl, items_csv):
    rows = slate_rows(n_users=6)
    for r, s in zip(rows, ["train", "train", "train", "val", "test", "test"]):
        r["split"] = s
    write_jsonl(slates_jsonl, rows)
    run = _run(tmp_path, slates_jsonl, items_csv)
    assert len(pd.read_parquet(run.path / "candidates/test.parquet")) == 2


def test_too_few_users_to_split(tmp_path, slates_jsonl, items_csv):
    write_jsonl(slates_jsonl, slate_rows(n_users=2))
    with pytest.raises(ValueError, match="2 users cannot be split"):
        _run(tmp_path, slates_jsonl, items_csv)


def test_cli_flags(tmp_path, slates_jsonl, items_csv):
    parser = build_parser()
    args = parser.parse_args(["run", "--out", str(tmp_path / "r"), "--profile", "tiny",
                              "--slates", str(slates_jsonl), "--items", str(items_csv)])
    cfg = _config(args)
    assert cfg.slates.path == str(slates_jsonl.resolve()) and cfg.slates.items == str(items_csv.resolve())
    assert cfg.rl.reward == "ndcg"  # several positives per slate: the conditional reward refuses them
    args = parser.parse_args(["rl", "--run-dir", str(tmp_path / "r"), "--profile", "tiny", "--reward", "auc",
                              "--slates", str(slates_jsonl), "--items", str(items_csv)])
    assert _config(args).rl.reward == "auc"
    args = parser.parse_args(["run", "--out", str(tmp_path / "r"), "--slates", str(slates_jsonl)])
    with pytest.raises(ConfigError, match="--slates and --items go together"):
        _config(args)
    with pytest.raises(ValueError, match="items is required with path"):
        load_config(None, [f"slates.path={slates_jsonl}"])
