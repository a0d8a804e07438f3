"""One listwise SFT recipe, trained from a finished run's mid-trained model and measured on validation
lists: N@5 / R@1 with the candidates in the pre-ranker's order (as the eval's student row scores it,
the position prior included when the recipe has one) and shown shuffled (the model's part alone, as
the eval's control scores it), beside the pre-rank order and a random order. A recipe is any
``SFTConfig`` field (``--set field=value``); the base run is only read. One JSON line per recipe is
appended to ``<out>/probe.jsonl``.

    .venv/bin/python benchmarks/listwise_probe.py --run-dir runs/beauty-medium --out runs/probe-prior \\
        --set steps=60 --set listwise_position_prior=true --val-lists 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from gr2.config import load_config
from gr2.lists import sample_lists
from gr2.llm.registry import load
from gr2.prompts.items import load_item_texts, trained_prompt
from gr2.runs import RunDir
from gr2.sft.curve import val_metrics
from gr2.sft.listwise import encode_lists, train_listwise
from gr2.sft.stage import position_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="a finished run (midtrain/model, candidates/)")
    ap.add_argument("--out", required=True, help="where the recipe's model and probe.jsonl go")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="an SFTConfig field")
    ap.add_argument("--val-lists", type=int, default=100)
    args = ap.parse_args()
    run = RunDir(Path(args.run_dir))
    cfg = load_config(run.path / "config.yaml", [f"sft.{s}" for s in args.set]).sft
    cfg = dataclasses.replace(cfg, curve_lists=0, keep_checkpoints=False)

    model, tok = load(str(run.path / "midtrain" / "model"))
    items = load_item_texts(run)
    prompt = trained_prompt(run.path, "sft")
    prior = position_prior(run) if cfg.listwise_position_prior else None
    lists = sample_lists(run, "train", cfg.steps * cfg.batch_size, cfg.seed)
    examples = encode_lists(tok, lists, items, prompt, cfg.listwise_shuffle, cfg.seed, prior)
    start = time.time()
    metrics = train_listwise(model, tok, examples, cfg, Path(args.out), prior=prior)
    val = sample_lists(run, "val", args.val_lists, cfg.seed)
    shown = val_metrics(model, tok, val, items, dataclasses.replace(prompt, order="prerank"), prior=prior)
    shuffled = val_metrics(model, tok, val, items, dataclasses.replace(prompt, order="shuffled"))
    k = len(val["labels"].iloc[0])
    line = {"set": args.set, "steps": metrics["steps"], "seconds": round(time.time() - start, 1),
            "ce": [metrics["ce_start"], metrics["ce_end"]], "prerank_N@5": shown["prerank_N@5"],
            "N@5": shown["N@5"], "R@1": shown["R@1"], "shuffled_N@5": shuffled["N@5"], "shuffled_R@1": shuffled["R@1"],
            "random_N@5": round(sum(1 / math.log2(r + 1) for r in range(1, 6)) / k, 4),
            "val_lists": shown["lists"]}
    print(json.dumps(line))
    with (Path(args.out) / "probe.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
