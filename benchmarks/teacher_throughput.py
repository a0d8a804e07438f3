"""Local teacher throughput (lists per minute) with and without batching, and prompt token counts of
the default and compact renderings, on a run's real candidate lists.

    .venv/bin/python benchmarks/teacher_throughput.py --run-dir runs/beauty-medium [--model smollm2-135m]
        [--lists 16] [--max-new-tokens 128] [--batch-sizes 1 8] [--threads 2]

Greedy decoding with a fixed ``max_new_tokens`` budget (the bundled models rarely stop early on this
task, so every answer costs about the same number of tokens). Throughput counts whole lists answered.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pandas as pd
import torch

from gr2.llm.generate import GenerationParams
from gr2.prompts.chat import apply_chat_template
from gr2.prompts.items import load_item_texts
from gr2.prompts.render import PromptConfig
from gr2.runs import RunDir
from gr2.traces.sampling import teacher_prompt
from gr2.traces.stage import load_examples
from gr2.traces.teachers import LocalTeacher


def token_counts(tokenizer, examples, cfg: PromptConfig) -> dict[str, float]:
    lengths = [len(tokenizer(apply_chat_template(tokenizer, teacher_prompt(e, cfg, 1, False).messages,
                                                 fallback="chatml"), add_special_tokens=False)["input_ids"])
               for e in examples]
    return {"mean": round(statistics.mean(lengths), 1), "p50": statistics.median(lengths), "max": max(lengths)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/beauty-quick")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lists", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    lists = pd.read_parquet(run.file("candidates", "train.parquet"))
    examples, _ = load_examples(lists, load_item_texts(run), args.lists, seed=0)
    teacher = LocalTeacher.load(args.model)
    res: dict = {"model": args.model, "lists": len(examples), "max_new_tokens": args.max_new_tokens,
                 "threads": args.threads, "prompt_tokens": {}}
    for name, cfg in {"default": PromptConfig(), "compact": PromptConfig(item_format="compact", max_history=10,
                                                                         domain_priming=False)}.items():
        res["prompt_tokens"][name] = token_counts(teacher.tokenizer, examples, cfg)
    convs = [teacher_prompt(e, PromptConfig(), 1, False).messages for e in examples]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    res["throughput"] = {}
    for bs in args.batch_sizes:
        teacher.batch_size = bs
        t = time.perf_counter()
        teacher.complete(convs, params)
        seconds = time.perf_counter() - t
        res["throughput"][f"batch {bs}"] = {"seconds": round(seconds, 1),
                                            "lists_per_min": round(60 * len(convs) / seconds, 2)}
        print(bs, res["throughput"][f"batch {bs}"], flush=True)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
