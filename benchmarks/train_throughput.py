"""Training throughput on this machine: tokens/s of a mid-training step as the ``midtrain`` stage runs it
(TRL ``SFTTrainer`` through :mod:`gr2.training`; the trace SFT shares its loss path) against a bare
PyTorch loop on the same examples, batch size and optimiser, and the compute floor beside them.

    .venv/bin/python benchmarks/train_throughput.py [--steps 6] [--batch-size 8] [--model M] [--lora]
        [--paths bare trl trl-full-head]

Paths: ``bare`` (a hand-written loop, full logits), ``trl`` (ours: the compact LM head,
:func:`gr2.training.loop.compact_lm_head`, the default), ``trl-full-head`` (``compact_lm_head=false``:
TRL's own CPU path, every position through the LM head), ``trl-grouped`` (``trl`` with
``group_by_length``: batches of similar lengths, so less padding; other batches than the paths
above, which all see the examples in file order), ``trl-compiled`` (``trl`` with ``torch_compile``:
the model compiled by ``torch.compile``; the compile runs in the untimed first step and again, in the
timed ones, whenever a new batch shape makes it recompile), ``trl-liger`` (``trl`` with Liger's
kernels; CUDA and ``pip install liger-kernel`` only). ``--device cuda`` (the default when CUDA is
present) trains in bf16 (the stages' precision there; the bare loop under bf16 autocast) and measures
the floor against bf16 matmuls. The compute floor is the tokens/s at which
the step's matmul FLOPs (≈ 6 × parameters per token for a full fine-tune, the forward and backward of
every weight) would take exactly the machine's measured matmul throughput (:func:`matmul_flops`).

Examples (``--examples``): mid-training examples (``runs/midtrain-beauty/midtrain/examples/train.parquet``
when present, written by benchmarks/midtrain_beauty.py), or a run's ``traces/accepted.jsonl`` for the
trace SFT's examples (long prompts, short answers; the weighted loss's per-token reweighting, one
multiply, is left out), else synthetic SID prompts. Every path sees the same examples, each
once; the first step of each is a warm-up and is not timed. Tokens = non-padding tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch


def examples(n: int, path: Path, model: str = "smollm2-135m") -> pd.DataFrame:
    """``n`` prompt/completion examples: mid-training examples (a ``.parquet``), SFT examples from a
    run's ``traces/accepted.jsonl`` (the chat-templated prompt and the answer with its end of turn,
    as the trace SFT tokenises them), else synthetic sequential-task prompts."""
    if path.suffix == ".jsonl" and path.exists():
        return trace_examples(n, path, model)
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


def trace_examples(n: int, path: Path, model: str) -> pd.DataFrame:
    from transformers import AutoTokenizer

    from gr2.llm.registry import resolve
    from gr2.prompts.chat import apply_chat_template, end_of_turn

    tok = AutoTokenizer.from_pretrained(str(resolve(model)))
    eot = end_of_turn(tok)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[:n] if x.strip()]
    rows = [("sft", apply_chat_template(tok, ex["messages"], add_generation_prompt=True, fallback="chatml"),
             ex["completion"] + eot) for ex in lines]
    return pd.DataFrame(rows, columns=["task", "prompt", "completion"])


def fresh_model(name: str, lora: bool, device: str = "cpu"):
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
    model.to(device).train()
    return model, tok


def matmul_flops(threads: int, size: int = 1024, repeats: int = 20, device: str = "cpu") -> float:
    """Measured matmul throughput (FLOP/s) of ``size``-square products: fp32 on ``threads`` CPU
    threads, bf16 (the training precision there) on CUDA."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a timer must not stop before it)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_trl(df, steps, bs, lr, max_len, out_dir, name, lora, compact=True, grouped=False, compiled=False,
              liger=False, device="cpu"):
    from transformers import TrainerCallback

    from gr2.midtrain.config import MidtrainConfig
    from gr2.training.loop import compact_lm_head, sft_args

    model, tok = fresh_model(name, lora, device)
    times, tokens = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            sync(device)
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            times.append(time.perf_counter() - self.t)

    cfg = MidtrainConfig(batch_size=bs, max_seq_len=max_len, save_steps=10**9, logging_steps=1, compact_lm_head=compact,
                         group_by_length=grouped, torch_compile=compiled, liger_kernels=liger)
    args = sft_args(cfg, out_dir, steps, lr, 0.0, 0.0, device)
    if not grouped:
        args.train_sampling_strategy = "sequential"  # the same batches, in the same order, as the bare loop
    # count non-padding tokens per batch from the collator's output (same count as the bare loop)
    from trl import SFTTrainer

    orig = SFTTrainer.training_step

    def counting_step(self, model, inputs, *a, **k):
        tokens.append(int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(inputs["input_ids"].numel()))
        return orig(self, model, inputs, *a, **k)

    SFTTrainer.training_step = counting_step
    try:
        with compact_lm_head(cfg.compact_lm_head):
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


def bench_bare(df, steps, bs, lr, max_len, name, lora, device="cpu"):
    """A hand-written loop; on CUDA in bf16 autocast, the precision the TRL paths train in there."""
    import contextlib

    from gr2.midtrain.train import tokenize_example

    model, tok = fresh_model(name, lora, device)
    cuda = device.startswith("cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rows = [tokenize_example(tok, p, c, max_len) for p, c in zip(df.prompt, df.completion)]
    pad = tok.pad_token_id
    times, tokens = [], []
    for s in range(steps):
        batch = rows[s * bs:(s + 1) * bs]
        sync(device)
        t = time.perf_counter()
        width = max(len(x) for x, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        lab = torch.full_like(ids, -100)
        for j, (x, m) in enumerate(batch):
            ids[j, :len(x)] = torch.tensor(x)
            att[j, :len(x)] = 1
            lab[j, :len(x)] = torch.tensor([xi if mi else -100 for xi, mi in zip(x, m)])
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            loss = model(input_ids=ids.to(device), attention_mask=att.to(device), labels=lab.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
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
    ap.add_argument("--out", default="runs/bench/train_throughput")
    ap.add_argument("--model", default="smollm2-135m", help="registry name or folder")
    ap.add_argument("--lora", action="store_true", help="LoRA adapters instead of full fine-tuning")
    ap.add_argument("--paths", nargs="+", default=["bare", "trl", "trl-full-head"],
                    choices=["bare", "trl", "trl-full-head", "trl-grouped", "trl-compiled", "trl-liger"])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    args = ap.parse_args()
    from gr2.training.setup import check_liger, resolve_device

    device = resolve_device(args.device)
    if "trl-liger" in args.paths:
        check_liger(device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    df = examples(args.steps * args.batch_size, Path(args.examples), args.model)
    flops = matmul_flops(args.threads, size=4096 if device.startswith("cuda") else 1024, device=device)
    params = sum(p.numel() for p in fresh_model(args.model, False)[0].parameters())
    floor = flops / (6 * params)
    res: dict = {"matmul_gflops": round(flops / 1e9, 1), "parameters": params,
                 "floor_tokens_per_s": round(floor, 1)}
    for name in args.paths:
        if name == "bare":
            times, tokens = bench_bare(df, args.steps, args.batch_size, args.lr, args.max_seq_len, args.model, args.lora,
                                       device)
        else:
            # grouping needs a pool of examples to group (transformers: mega-batches of up to 50 batches)
            pool = examples(args.steps * args.batch_size * 8, Path(args.examples), args.model) if name == "trl-grouped" else df
            times, tokens = bench_trl(pool, args.steps, args.batch_size, args.lr, args.max_seq_len,
                                      Path(args.out) / name, args.model, args.lora, compact=name != "trl-full-head",
                                      grouped=name == "trl-grouped", compiled=name == "trl-compiled",
                                      liger=name == "trl-liger", device=device)
        t, n = sum(times[1:]), sum(tokens[1:len(times)])
        res[name] = {"timed_steps": len(times) - 1, "seconds": round(t, 2), "tokens": n,
                     "tokens_per_s": round(n / t, 1), "s_per_step": round(t / max(1, len(times) - 1), 2),
                     "floor_over_this": round(floor / (n / t), 2)}
        print(name, res[name], flush=True)
    if "bare" in res and "trl" in res:
        res["bare_over_trl_tokens_per_s"] = round(res["bare"]["tokens_per_s"] / res["trl"]["tokens_per_s"], 3)
    res.update(device=device, model=args.model, lora=args.lora, batch_size=args.batch_size, threads=args.threads, torch=torch.__version__,
               examples=args.examples if Path(args.examples).exists() else "synthetic")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
