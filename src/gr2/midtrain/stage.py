"""The ``midtrain`` stage (docs/method.md §4): teach the student LLM the SID tokens.

Reads ``data/items.parquet``, ``data/interactions.parquet`` (train split only) and
``sid/sids.parquet``; writes under ``midtrain/``:

* ``examples/train.parquet``, ``examples/eval.parquet`` — the task mixture (task, prompt, completion)
  and the held-out examples of the per-task losses;
* ``checkpoints/warmup/checkpoint-N``, ``checkpoints/main/checkpoint-N`` — every ``save_steps``; a
  re-run after an interruption resumes from the latest one (deleted at the end unless
  ``keep_checkpoints``); ``warmup_model/`` — the model after phase 1, so phase 1 is never redone;
* ``tb/warmup``, ``tb/main`` — TensorBoard logs;
* ``model/`` — the final model + tokenizer (``save_pretrained``, written atomically; LoRA merged);
* ``metrics.json`` — per-task loss before/after, phase logs, timings.

Under ``accelerate launch`` the main process builds and writes the examples, which every process then
reads and trains on; it alone measures the per-task losses and writes (:mod:`gr2.training.dist`).
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import pandas as pd

from gr2.midtrain.config import MidtrainConfig
from gr2.midtrain.tasks import build_examples, load_inputs, sid_shape
from gr2.runs import (
    RunDir,
    atomic_write_json,
    atomic_write_parquet,
    read_json,
)
from gr2.training import dist

log = logging.getLogger(__name__)

OUTPUTS = ("midtrain/model/config.json", "midtrain/metrics.json")


def sid_catalogue(run: RunDir) -> list[tuple[str, str]]:
    """``(SID, "title | category path")`` of every item: what ``token_init: catalogue`` starts the
    SID token rows from (:func:`gr2.llm.vocab.add_sid_tokens`)."""
    from gr2.prompts.items import load_item_texts

    return [(it.sid, " | ".join([it.title, " > ".join(it.categories)])) for it in load_item_texts(run).values()]


def _load_student(run: RunDir, cfg: MidtrainConfig, folder, levels: int, codebook_size: int) -> tuple[Any, Any, int]:
    from gr2.llm.registry import load
    from gr2.llm.vocab import add_sid_tokens

    model, tok = load(folder if folder is not None else cfg.model)
    # a warm-up checkpoint already has its rows
    catalogue = sid_catalogue(run) if cfg.token_init == "catalogue" and folder is None else None
    added = add_sid_tokens(model, tok, levels=levels, codebook_size=codebook_size, init=cfg.token_init,
                           seed=cfg.seed, catalogue=catalogue)
    return model, tok, added


def run_midtrain(run: RunDir, cfg: MidtrainConfig) -> dict:
    """Build the task mixture, train (warm-up on the new rows, then full or LoRA), save the model and
    per-task losses. Resumes from checkpoints left by an interrupted run of the same config."""
    from gr2.midtrain.train import (
        freeze_all_but_rows,
        new_token_ids,
        task_losses,
        unfreeze,
    )
    from gr2.training.loop import run_phase, sft_args
    from gr2.training.setup import lora_config, start_training

    dist.refuse_sharded("mid-training (two training phases, the SID rows' gradient mask)")
    t0 = time.perf_counter()
    out = run.stage_dir("midtrain")
    device = start_training(cfg)
    auto_levels, auto_size = sid_shape(run)
    levels = cfg.levels or auto_levels
    codebook_size = cfg.codebook_size or auto_size

    if dist.is_main():
        train, heldout = build_examples(load_inputs(run, cfg), cfg)
        atomic_write_parquet(out / "examples" / "train.parquet", train)
        atomic_write_parquet(out / "examples" / "eval.parquet", heldout)
    dist.barrier()
    if not dist.is_main():  # every process trains on the main one's examples
        train, heldout = load_examples(run)
    counts = train["task"].value_counts().reindex(sorted(train["task"].unique())).to_dict()
    log.info("midtrain: %d training examples %s, %d held out", len(train), counts, len(heldout))

    warm_dir = out / "warmup_model"
    warm_done = (warm_dir / "config.json").exists()
    model, tok, added = _load_student(run, cfg, warm_dir if warm_done else None, levels, codebook_size)
    model.to(device)
    sid_ids = new_token_ids(tok, levels, codebook_size)

    before_path = out / "loss_before.json"
    if not dist.is_main():
        before = None  # measured and written by the main process
    elif before_path.exists():
        before = read_json(before_path)
    else:
        before = task_losses(model, tok, heldout, cfg.max_seq_len, cfg.eval_batch_size)
        atomic_write_json(before_path, before)

    phases: dict[str, Any] = {}
    if cfg.warmup_steps > 0 and not warm_done:
        handles = freeze_all_but_rows(model, sid_ids)
        args = sft_args(cfg, out / "checkpoints" / "warmup", cfg.warmup_steps, cfg.warmup_lr, 0.0, 0.0, device)
        model, phases["warmup"] = run_phase(model, tok, train, args, out / "tb" / "warmup",
                                            compact_head=cfg.compact_lm_head)
        unfreeze(model, handles)
        dist.save_model(model, tok, warm_dir)
    for p in model.parameters():
        p.requires_grad_(True)

    if cfg.steps > 0:
        handles: list[Any] = []
        weight_decay = cfg.weight_decay
        if cfg.lora:
            # LoRA adapters on the blocks, plus the SID rows of the (tied) embedding matrix trained in
            # place through a row-masking hook: TRL's fused LM head rejects PEFT wrappers on lm_head, so
            # PEFT's trainable_token_indices cannot be used with tied embeddings.
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(cfg))
            handles = freeze_all_but_rows(model, sid_ids)
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(True)
            weight_decay = 0.0  # decay would move the frozen embedding rows
        args = sft_args(cfg, out / "checkpoints" / "main", cfg.steps, cfg.lr, weight_decay,
                        cfg.lr_warmup_ratio, device)
        model, phases["main"] = run_phase(model, tok, train, args, out / "tb" / "main",
                                          compact_head=cfg.compact_lm_head)
        if cfg.lora:
            for h in handles:
                h.remove()
            model = model.merge_and_unload()

    after = task_losses(model, tok, heldout, cfg.max_seq_len, cfg.eval_batch_size) if dist.is_main() else None
    dist.save_model(model, tok, out / "model")
    if not dist.is_main():
        return {}  # the main process writes the metrics and removes the checkpoints
    seconds = time.perf_counter() - t0
    metrics = {
        "model": cfg.model,
        "device": device,
        "levels": levels,
        "codebook_size": codebook_size,
        "sid_tokens_added": added,
        "train_examples": int(len(train)),
        "train_examples_per_task": {k: int(v) for k, v in counts.items()},
        "heldout_examples": int(len(heldout)),
        "loss_before": before,
        "loss_after": after,
        "phases": phases,
        "seconds": round(seconds, 2),
    }
    atomic_write_json(out / "metrics.json", metrics)
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(warm_dir, ignore_errors=True)
    before_path.unlink(missing_ok=True)
    summary = {f"loss_{t}": f"{before[t]['loss']:.3f}->{after[t]['loss']:.3f}" for t in after if t in before}
    summary.update(examples=int(len(train)), seconds=round(seconds, 1),
                   steps=sum(p.get("global_step", 0) for p in phases.values()))
    return summary


def load_examples(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``(train, eval)`` examples a finished run used."""
    return (pd.read_parquet(run.file("midtrain", "examples/train.parquet")),
            pd.read_parquet(run.file("midtrain", "examples/eval.parquet")))
