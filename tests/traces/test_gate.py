"""The teacher gate: a pure verdict over first-try records, and `run_traces` refusing a teacher that
only copies the (shuffled) shown order, unless overridden."""

from __future__ import annotations

import json
import re

import pytest

from gr2.traces.config import TracesConfig
from gr2.traces.gate import gate_verdict
from gr2.traces.stage import run_traces

from .test_stage import make_run


def _record(order: list[int], target: int, status: str = "ok", attempt: int = 1) -> dict:
    return {"repaired": order, "target_index": target, "status": status, "attempt": attempt}


def test_verdict_passes_a_teacher_that_finds_the_target():
    ident = list(range(5))
    records = [_record([t] + [i for i in ident if i != t], t) for t in [0, 1, 2, 3, 4] * 20]
    v = gate_verdict(records)
    assert v["lists"] == 100 and v["teacher"]["top1"] == 1.0 and v["prerank"]["top1"] == pytest.approx(0.2)
    assert v["passed"] and v["top1_diff"] == pytest.approx(0.8) and v["top1_diff_ci"][0] > 0
    assert v["p_value"] == 0 and v["n_boot"] == 1000  # what the report needs to write p < 0.002


def test_verdict_fails_a_copier_and_ignores_later_attempts():
    records = [_record(list(range(5)), t) for t in [0, 1, 2, 3, 4] * 20]  # returns the pre-rank order
    records += [_record([1, 0, 2, 3, 4], 1, attempt=2)]
    v = gate_verdict(records)
    assert v["lists"] == 100 and v["top1_diff"] == 0 and not v["passed"]
    assert v["teacher"]["valid_rate"] == 1.0
    with pytest.raises(ValueError):
        gate_verdict([])


class CopiesShownOrder:
    """Answers with the candidates in the order shown: exposed by the shuffled gate."""

    name = "copier"

    def complete(self, conversations, params, seeds=None):
        out = []
        for conv in conversations:
            shown = re.findall(r"^\[\d+\] (\S+)", conv[-1]["content"], flags=re.MULTILINE)
            out.append(json.dumps({"explanation": "same as shown", "recommendations": shown}))
        return out


def test_run_traces_refuses_a_copier_unless_overridden(tmp_path):
    run, _ = make_run(tmp_path / "run")
    cfg = TracesConfig(attempts=1, n_examples=5, batch_size=5, gate_lists=5,
                       prompt={"order": "prerank"})  # traces in pre-rank order; the gate still shuffles
    with pytest.raises(RuntimeError, match="teacher gate on 5 shuffled train lists"):
        run_traces(run, cfg, teacher=CopiesShownOrder())
    gate = json.loads((run.path / "traces/teacher_gate.json").read_text())
    assert not gate["passed"] and gate["teacher_name"] == "copier"
    assert not (run.path / "traces/accepted.jsonl").exists()

    summary = run_traces(run, TracesConfig(attempts=1, n_examples=5, batch_size=5, gate_lists=5,
                                           prompt={"order": "prerank"}, gate_override=True),
                         teacher=CopiesShownOrder())
    stats = json.loads((run.path / "traces/stats.json").read_text())
    assert stats["gate"]["override"] is True and summary["examples"] == 5
    assert stats["identity_copy"]["prerank"] == 1.0, "in pre-rank order the copier copies the pre-ranker"
