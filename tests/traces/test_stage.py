"""``run_traces`` end to end on a hand-made run directory with a fake teacher."""

from __future__ import annotations

import json
import re

import pandas as pd

from gr2.runs import RunDir
from gr2.traces.config import TracesConfig
from gr2.traces.stage import OUTPUTS, run_traces

N_USERS = 6


def sid(i: int) -> str:
    return f"<s_a_{i % 4}><s_b_{i}><s_c_0><s_d_{i % 3}>"


def make_run(root) -> tuple[RunDir, dict[str, int]]:
    """User u: history [u, u + 1], candidates 20 + 5u .. 24 + 5u, target at pre-rank index u % 5;
    the last user's target (item 99) is not among its candidates."""
    run = RunDir(root)
    n_items = 100
    pd.DataFrame({
        "item_id": range(n_items), "raw_id": [f"r{i}" for i in range(n_items)],
        "title": [f"Product {i}" if i % 7 else None for i in range(n_items)],
        "categories": [["Beauty", f"Group {i % 3}"] if i % 5 else [] for i in range(n_items)],
        "description": [""] * n_items,
    }).to_parquet(run.stage_dir("data") / "items.parquet", index=False)
    pd.DataFrame({"item_id": range(n_items), "codes": [[i % 4, i, 0, i % 3] for i in range(n_items)],
                  "sid": [sid(i) for i in range(n_items)]}).to_parquet(run.stage_dir("sid") / "sids.parquet",
                                                                         index=False)
    rows, targets = [], {}
    for u in range(N_USERS):
        cands = list(range(20 + 5 * u, 25 + 5 * u))
        target = 99 if u == N_USERS - 1 else cands[u % 5]
        targets[f"train-{u}"] = target
        rows.append({"example_id": f"train-{u}", "user_id": u, "history": [u, u + 1], "candidates": cands,
                     "scores": [1.0 - 0.1 * j for j in range(5)], "labels": [int(c == target) for c in cands],
                     "target": target, "split": "train"})
    pd.DataFrame(rows).to_parquet(run.stage_dir("candidates") / "train.parquet", index=False)
    return run, targets


class TargetFirstForEvenUsers:
    """Ranks the target first for even users; odd users get an unreadable answer."""

    name = "fake"

    def __init__(self, targets: dict[str, int]):
        self.good = {sid(t) for e, t in targets.items() if int(e.split("-")[1]) % 2 == 0}
        self.calls = 0

    def complete(self, conversations, params, seeds=None):
        self.calls += 1
        out = []
        for conv in conversations:
            shown = re.findall(r"^\[\d+\] (\S+)", conv[-1]["content"], flags=re.MULTILINE)
            hit = [s for s in shown if s in self.good]
            out.append(json.dumps({"explanation": "Group 1 buyer; the next step is styling.",
                                   "recommendations": hit + [s for s in shown if s not in hit]})
                       if hit else "sorry")
        return out


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_traces_end_to_end(tmp_path):
    run, targets = make_run(tmp_path / "run")
    cfg = TracesConfig(attempts=2, n_examples=4, batch_size=3, seed=1, gate_lists=0)
    teacher = TargetFirstForEvenUsers(targets)
    summary = run_traces(run, cfg, teacher=teacher)
    assert all((run.path / o).exists() for o in OUTPUTS)

    samples = read_jsonl(run.path / "traces" / "samples.jsonl")
    sampled = sorted({r["example_id"] for r in samples}, key=lambda e: int(e.split("-")[1]))
    assert len(sampled) == 4 and "train-5" not in sampled  # its target is not in the list
    even = [e for e in sampled if int(e.split("-")[1]) % 2 == 0]
    odd = [e for e in sampled if e not in even]
    assert len(samples) == len(even) + 2 * len(odd)
    assert summary == {"examples": 4, "calls": len(samples), "accepted": len(even),
                       "acceptance_rate": len(even) / 4, "valid_rate": len(even) / len(samples),
                       "teacher_R@1": len(even) / 4, "prerank_R@1": 0.25 * sum(int(e[-1]) % 5 == 0 for e in sampled)}

    accepted = read_jsonl(run.path / "traces" / "accepted.jsonl")
    assert [a["example_id"] for a in accepted] == even
    for a in accepted:
        assert [m["role"] for m in a["messages"]] == ["system", "user"]
        u = int(a["example_id"].split("-")[1])
        assert f"1. {sid(u)}" in a["messages"][1]["content"] and "actually bought" not in a["messages"][1]["content"]
        body = json.loads(a["completion"])
        assert body["recommendations"][0] == sid(targets[a["example_id"]])
        assert len(body["recommendations"]) == 5 and body["explanation"].startswith("Group 1")
        assert a["attempt"] == 1 and a["mode"] == "rejection" and a["teacher"] == "fake"

    stats = json.loads((run.path / "traces" / "stats.json").read_text())
    assert stats["lists"] == {"lists": 6, "with_target": 5, "sampled": 4}
    assert stats["teacher"]["n"] == 4 and stats["acceptance"]["accepted"] == len(even)
    assert stats["errors"]["wrong_format"] == 2 * len(odd) and stats["config"]["n_examples"] == 4

    again = TargetFirstForEvenUsers(targets)  # a rerun resumes: nothing left to ask
    assert run_traces(run, cfg, teacher=again) == summary and again.calls == 0

    changed = TargetFirstForEvenUsers(targets)  # another sampling config never mixes with the old file
    run_traces(run, TracesConfig(attempts=2, n_examples=4, batch_size=3, seed=1, temperature=0.2, gate_lists=0), teacher=changed)
    assert changed.calls > 0 and len(list((run.path / "traces").glob("samples.stale-*.jsonl"))) == 1
