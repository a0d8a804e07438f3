"""Run a profile stage by stage under one wall-clock budget, keep whatever finished, and write one
summary JSON: what a lent GPU machine (15 minutes, starts included) needs.

    .venv/bin/python benchmarks/run_budget.py --out runs/gpu --budget-s 540 --profile gpu --dataset beauty \
        [--stages midtrain sft rl eval] [--set section.field=value ...]

One ``gr2 run --stages ...`` child process runs the stages in order (stages already complete for the
config — made here or on another machine and carried over — are reused as they are); when the
budget is spent it is killed with its process group, and the stage it was in keeps its checkpoints
(the next call resumes it). ``<out>/budget_summary.json``: per stage its status (``done``, ``skipped``
— complete before this call —, ``out of time``, ``failed``, ``not started``), seconds and summary
from the run's manifest, the training stages' tokens/s (their ``metrics.json``), the results table's
N@5 per row, and the budget. Exit code 0 when every asked stage is done, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gr2.runs import atomic_write_json, read_json
from gr2.stages import STAGE_NAMES


def run_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-c", "import sys; from gr2.cli import main; sys.exit(main(sys.argv[1:]))",
               "run", "--out", str(args.out), "--stages", *args.stages]
    for flag in ("config", "profile", "dataset"):
        if getattr(args, flag):
            command += [f"--{flag}", str(getattr(args, flag))]
    for override in args.set:
        command += ["--set", override]
    return command


def run_within(command: list[str], seconds: float) -> tuple[bool, float, str]:
    """``(finished in time, wall seconds, last lines of stderr)`` of a child process given ``seconds``."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a kill takes its workers too
    try:
        _, err = proc.communicate(timeout=seconds)
        in_time = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        in_time = False
    return in_time, time.monotonic() - start, "\n".join(err.splitlines()[-5:])


def tokens_per_second(out: Path, stage: str) -> float | None:
    """The training speed a stage's ``metrics.json`` records (mid-training: over its phases)."""
    path = out / stage / "metrics.json"
    if not path.is_file():
        return None
    metrics = read_json(path)
    if "tokens_per_second" in metrics:
        return metrics["tokens_per_second"]
    phases = metrics.get("phases") or {}
    tokens = sum(p.get("tokens", 0) for p in phases.values())
    seconds = sum(p.get("seconds", 0) for p in phases.values())
    return round(tokens / seconds, 1) if tokens and seconds else None


def finished(out: Path) -> dict[str, str]:
    """When each stage of the run last finished (from its manifest; empty without one)."""
    path = out / "manifest.json"
    stages = read_json(path).get("stages", {}) if path.is_file() else {}
    return {s: v["finished"] for s, v in stages.items() if v.get("status") == "done" and "finished" in v}


def stage_rows(out: Path, stages: list[str], before: dict[str, str], in_time: bool) -> dict[str, dict[str, Any]]:
    """Each asked stage's status, seconds, summary and tokens/s, read from the run's manifest."""
    path = out / "manifest.json"
    manifest = read_json(path).get("stages", {}) if path.is_file() else {}
    rows = {}
    for stage in stages:
        recorded = manifest.get(stage) or {}
        status = {"done": "done", "running": "out of time" if not in_time else "failed",
                  "failed": "failed"}.get(recorded.get("status"), "not started")
        if status == "done" and recorded.get("finished") == before.get(stage):
            status = "skipped"
        rows[stage] = {"status": status, "seconds": recorded.get("seconds"), "summary": recorded.get("summary"),
                       "tokens_per_second": tokens_per_second(out, stage)}
    return rows


def results_n5(out: Path) -> dict[str, float]:
    """N@5 of every row of ``eval/results.json`` (subsets included)."""
    path = out / "eval" / "results.json"
    if not path.is_file():
        return {}
    res = read_json(path)
    table = {name: row["metrics"]["N@5"] for name, row in res["systems"].items()}
    return table | {name: sub["systems"][name]["metrics"]["N@5"] for name, sub in res.get("subsets", {}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run directory")
    ap.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for all stages")
    ap.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=STAGE_NAMES)
    ap.add_argument("--config")
    ap.add_argument("--profile")
    ap.add_argument("--dataset")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = ap.parse_args(argv)
    args.stages = [s for s in STAGE_NAMES if s in args.stages]
    before = finished(args.out)
    in_time, wall, err = run_within(run_command(args), args.budget_s)
    rows = stage_rows(args.out, args.stages, before, in_time)
    for stage, row in rows.items():
        print(f"{stage}: {row['status']} ({row['seconds']} s)", flush=True)
    done = all(r["status"] in ("done", "skipped") for r in rows.values())
    summary = {"budget_s": args.budget_s, "wall_s": round(wall, 1), "stages": rows,
               "results_n5": results_n5(args.out) if rows.get("eval", {}).get("status") in ("done", "skipped") else {},
               **({"stderr": err} if not done else {})}
    atomic_write_json(args.out / "budget_summary.json", summary)
    print(json.dumps(summary["results_n5"], indent=1))
    return 0 if done else 3


if __name__ == "__main__":
    sys.exit(main())
