"""The teacher gate (gr2.traces.gate) for a local LLM teacher on a run's training lists, without
touching the run: the gate's store and verdict go to ``--out``.

    .venv/bin/python benchmarks/teacher_gate.py --run-dir runs/beauty-medium --model qwen2.5-0.5b \\
        --lists 20 --max-new-tokens 384 --out runs/bench/gate-qwen2.5-0.5b [--compact] [--ranking-only]

Prints the verdict (teacher top-1 on shuffled lists vs the pre-rank R@1, paired bootstrap) and the
wall time. Re-running resumes from the store in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import torch

from gr2.prompts.items import load_item_texts
from gr2.prompts.render import PromptConfig
from gr2.runs import RunDir, atomic_write_json
from gr2.traces.config import TracesConfig
from gr2.traces.gate import run_gate
from gr2.traces.stage import load_examples
from gr2.traces.store import TraceStore
from gr2.traces.teachers import LocalTeacher


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/beauty-quick")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--lists", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--compact", action="store_true", help="SID-only items, 10 history items, no priming")
    ap.add_argument("--ranking-only", action="store_true",
                    help="ask for the ranking without an explanation (the gate judges the ranking only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    prompt = (PromptConfig(item_format="compact", max_history=10, domain_priming=False) if args.compact
              else PromptConfig())
    prompt = dataclasses.replace(prompt, reasoning=not args.ranking_only)
    cfg = TracesConfig(teacher="local", model=args.model, temperature=0.0, max_new_tokens=args.max_new_tokens,
                       batch_size=args.batch_size, prompt=prompt)
    lists = pd.read_parquet(run.file("candidates", "train.parquet"))
    examples, _ = load_examples(lists, load_item_texts(run), args.lists, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    teacher = LocalTeacher.load(args.model, batch_size=args.batch_size)
    verdict = run_gate(teacher, examples, cfg, TraceStore(args.out / "gate.jsonl"), progress=True)
    verdict.update(seconds=round(time.perf_counter() - t, 1), max_new_tokens=args.max_new_tokens,
                   prompt="compact" if args.compact else "default", reasoning=not args.ranking_only,
                   threads=args.threads)
    atomic_write_json(args.out / "teacher_gate.json", verdict)
    print(json.dumps(verdict, indent=1))


if __name__ == "__main__":
    main()
