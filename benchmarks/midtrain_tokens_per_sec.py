"""Tokens/s of a mid-training step: TRL SFTTrainer (as the midtrain stage runs it) vs a bare PyTorch
loop on the same examples, batch size and optimiser (framework overhead ratio). Full fine-tuning
of smollm2-135m by default; ``--model qwen2.5-0.5b --lora`` for the 0.5B model with LoRA adapters
(r 16 on every projection, as ``MidtrainConfig``; PEFT-wrapped in both paths).

    .venv/bin/python benchmarks/midtrain_tokens_per_sec.py [--steps 6] [--batch-size 8] [--model M] [--lora]

Examples: ``runs/midtrain-beauty/midtrain/examples/train.parquet`` when present (written by
benchmarks/midtrain_beauty.py), else synthetic SID prompts. Both paths see the same examples, each
once; the first step of each is a warm-up and is not timed. Tokens = non-padding tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch


def examples(n: int, path: Path) -> pd.DataFrame:
    if path.exists():
        df = pd.read_parquet(path)
        return df.iloc[:n].reset_index(drop=True)
    from gr2.prompts.sequential import sequential_prompt
    from gr2.prompts.sids import render_sid

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        codes = torch.randint(0, 256, (9, 4), generator=g).tolist()
        rows.append(("sequential", sequential_prompt([render_sid(c, wrap=True) for c in codes[:-1]]),
                     render_sid(codes[-1], wrap=True)))
    return pd.DataFrame(rows, columns=["task", "prompt", "completion"])


def fresh_model(name: str, lora: bool):
    from gr2.llm.registry import load
    from gr2.llm.vocab import add_sid_tokens

    model, tok = load(name)
    add_sid_tokens(model, tok, levels=4, codebook_size=256)
    if lora:
        from peft import LoraConfig, get_peft_model

        from gr2.midtrain.config import MidtrainConfig

        c = MidtrainConfig()
        model = get_peft_model(model, LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                                                 target_modules=list(c.lora_targets), task_type="CAUSAL_LM"))
    model.train()
    return model, tok


def bench_trl(df, steps, bs, lr, max_len, out_dir, name, lora):
    from transformers import TrainerCallback

    from gr2.midtrain.config import MidtrainConfig
    from gr2.training.loop import sft_args

    model, tok = fresh_model(name, lora)
    times, tokens = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    cfg = MidtrainConfig(batch_size=bs, max_seq_len=max_len, save_steps=10**9, logging_steps=1)
    args = sft_args(cfg, out_dir, steps, lr, 0.0, 0.0, "cpu")
    args.train_sampling_strategy = "sequential"  # the same batches, in the same order, as the bare loop
    # count non-padding tokens per batch from the collator's output (same count as the bare loop)
    from trl import SFTTrainer

    orig = SFTTrainer.training_step

    def counting_step(self, model, inputs, *a, **k):
        tokens.append(int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(inputs["input_ids"].numel()))
        return orig(self, model, inputs, *a, **k)

    SFTTrainer.training_step = counting_step
    try:
        run_phase_with_callback(model, tok, df, args, Timer())
    finally:
        SFTTrainer.training_step = orig
    return times, tokens


def run_phase_with_callback(model, tok, df, args, cb):
    from datasets import Dataset
    from trl import SFTTrainer

    ds = Dataset.from_pandas(df[["prompt", "completion"]], preserve_index=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[cb])
    trainer.train()
    return trainer


def bench_bare(df, steps, bs, lr, max_len, name, lora):
    from gr2.midtrain.train import tokenize_example

    model, tok = fresh_model(name, lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rows = [tokenize_example(tok, p, c, max_len) for p, c in zip(df.prompt, df.completion)]
    pad = tok.pad_token_id
    times, tokens = [], []
    for s in range(steps):
        batch = rows[s * bs:(s + 1) * bs]
        t = time.perf_counter()
        width = max(len(x) for x, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        lab = torch.full_like(ids, -100)
        for j, (x, m) in enumerate(batch):
            ids[j, :len(x)] = torch.tensor(x)
            att[j, :len(x)] = 1
            lab[j, :len(x)] = torch.tensor([xi if mi else -100 for xi, mi in zip(x, m)])
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
        tokens.append(int(att.sum()))
    return times, tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--examples", default="runs/midtrain-beauty/midtrain/examples/train.parquet")
    ap.add_argument("--out", default="runs/bench/midtrain_tps")
    ap.add_argument("--model", default="smollm2-135m", help="registry name or folder")
    ap.add_argument("--lora", action="store_true", help="LoRA adapters instead of full fine-tuning")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    df = examples(args.steps * args.batch_size, Path(args.examples))
    res = {}
    for name in ("bare", "trl"):
        if name == "trl":
            times, tokens = bench_trl(df, args.steps, args.batch_size, args.lr, args.max_seq_len, Path(args.out),
                                      args.model, args.lora)
        else:
            times, tokens = bench_bare(df, args.steps, args.batch_size, args.lr, args.max_seq_len, args.model, args.lora)
        t, n = sum(times[1:]), sum(tokens[1:len(times)])
        res[name] = {"timed_steps": len(times) - 1, "seconds": round(t, 2), "tokens": n,
                     "tokens_per_s": round(n / t, 1), "s_per_step": round(t / max(1, len(times) - 1), 2)}
        print(name, res[name], flush=True)
    res["overhead_ratio_trl_over_bare"] = round(res["trl"]["s_per_step"] / res["bare"]["s_per_step"], 3)
    res["tokens_per_s_ratio_bare_over_trl"] = round(res["bare"]["tokens_per_s"] / res["trl"]["tokens_per_s"], 3)
    res.update(model=args.model, lora=args.lora, batch_size=args.batch_size, threads=args.threads, torch=torch.__version__,
               examples=args.examples if Path(args.examples).exists() else "synthetic")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
