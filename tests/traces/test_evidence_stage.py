"""``gr2 traces`` with the evidence teacher on a real (tiny) run: data → candidates → SIDs → traces."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.config import load_config
from gr2.pipeline import run_pipeline
from gr2.prompts.parse import parse_output
from gr2.prompts.sids import render_sid
from gr2.traces.evidence import TEACHER_NAME
from gr2.traces.stage import run_traces

TINY = ["data.k_core=2", "candidates.prerank=cooc", "candidates.keep_missed=false"]


def test_evidence_teacher_traces(generic_dir: Path, tmp_path: Path):
    cfg = load_config(None, [*TINY, "traces.teacher=evidence", "traces.attempts=3", "traces.gate_override=true"],
                      base={"data": {"dataset": str(generic_dir)}})
    run = run_pipeline(tmp_path / "run", cfg, stages=["data", "candidates"])
    n_items = json.loads((run.path / "data/stats.json").read_text())["items"]
    codes = list(itertools.product(range(4), repeat=4))[:n_items]
    pd.DataFrame({"item_id": np.arange(n_items), "codes": [list(c) for c in codes],
                  "sid": [render_sid(c) for c in codes]}).to_parquet(run.stage_dir("sid") / "sids.parquet")

    summary = run_traces(run, cfg.traces)
    stats = json.loads((run.path / "traces/stats.json").read_text())
    assert stats["teacher"]["name"] == TEACHER_NAME
    assert summary["calls"] == summary["examples"] > 0, "deterministic teacher: one call per list"
    assert stats["valid_rate"] == 1.0
    samples = [json.loads(x) for x in (run.path / "traces/samples.jsonl").read_text().splitlines()]
    assert {r["attempt"] for r in samples} == {1}
    accepted = [json.loads(x) for x in (run.path / "traces/accepted.jsonl").read_text().splitlines()]
    assert len(accepted) == summary["accepted"] == sum(r["accepted"] for r in samples)
    lists = pd.read_parquet(run.path / "candidates/train.parquet").set_index("example_id")
    for a in accepted:
        sids = [render_sid(codes[int(c)]) for c in lists.loc[a["example_id"], "candidates"]]
        parsed = parse_output(a["completion"], sids, require_explanation=True)
        assert parsed.ok and parsed.order[0] == a["target_index"], "accepted = the teacher's top-1 is the target"
        assert "Step" in json.loads(a["completion"])["explanation"] or parsed.explanation
    gate = json.loads((run.path / "traces/teacher_gate.json").read_text())
    assert gate["lists"] == stats["gate"]["lists"] > 0 and gate["override"] is True
    assert gate["passed"] is False, "on this deterministic toy data the pre-rank order is already perfect"
