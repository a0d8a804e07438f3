"""Quick mid-training measurement on Amazon Beauty with smollm2-135m (docs/midtrain.md).

    .venv/bin/python benchmarks/midtrain_beauty.py [--run runs/midtrain-beauty] [--steps 30] ...

Uses the run's data/ (copied from --data-from when missing) and sid/ (built with the training-free
RQ-KMeans tokenizer when missing), then runs the ``midtrain`` stage in a quick setting and prints the
per-task held-out loss before/after.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from gr2.midtrain.config import MidtrainConfig
from gr2.runs import RunDir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/midtrain-beauty")
    ap.add_argument("--data-from", default="runs/sid-beauty/data")
    ap.add_argument("--n-examples", type=int, default=2000)
    ap.add_argument("--eval-per-task", type=int, default=16)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-seq-len", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    run = RunDir(Path(args.run))
    if not (run.path / "data" / "items.parquet").exists():
        shutil.copytree(args.data_from, run.path / "data", dirs_exist_ok=True)
    if not (run.path / "sid" / "sids.parquet").exists():
        from gr2.sid.config import SidConfig
        from gr2.sid.stage import run_sid

        t = time.perf_counter()
        print("sid:", run_sid(run, SidConfig(method="rqkmeans", progress=False)), f"{time.perf_counter() - t:.1f}s")
    cfg = MidtrainConfig(n_examples=args.n_examples, eval_examples_per_task=args.eval_per_task,
                         warmup_steps=args.warmup_steps, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, max_seq_len=args.max_seq_len, max_history=10, persona_items=5,
                         save_steps=20, logging_steps=5, device="cpu")
    from gr2.midtrain.stage import run_midtrain

    summary = run_midtrain(run, cfg)
    m = json.loads((run.path / "midtrain" / "metrics.json").read_text())
    print(json.dumps(summary, indent=1))
    print("| task | held-out examples | completion tokens | loss before | loss after |")
    print("|---|---|---|---|---|")
    for t, b in m["loss_before"].items():
        a = m["loss_after"][t]
        print(f"| {t} | {b['examples']} | {b['tokens']} | {b['loss']:.3f} | {a['loss']:.3f} |")
    for name, ph in m["phases"].items():
        print(name, {k: ph[k] for k in ("global_step", "train_loss", "seconds")})
    print("total seconds", m["seconds"])


if __name__ == "__main__":
    main()
