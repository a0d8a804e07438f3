"""Training machinery of the ``midtrain`` stage: SID tokens, the embeddings-only warm-up, TRL
``SFTTrainer`` phases with checkpoints/resume/TensorBoard, and per-task losses.

CPU-safe by construction (docs/resources.md): ``bf16`` only on a CUDA device that supports it,
activation (gradient) checkpointing off always, ``use_cpu=True`` without CUDA.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from gr2.midtrain.config import MidtrainConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from gr2.sft.config import SFTConfig as StageSFTConfig

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device


def latest_checkpoint(folder: Path) -> Path | None:
    """The ``checkpoint-N`` sub-folder with the largest N (``None`` when there is none)."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    found = [(n, p) for n, p in found if (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def new_token_ids(tokenizer: Any, levels: int, codebook_size: int) -> list[int]:
    """Ids of every SID token (levels × codes, begin, end), sorted."""
    from gr2.llm.vocab import sid_tokens

    return sorted(int(i) for i in tokenizer.convert_tokens_to_ids(sid_tokens(levels, codebook_size)))


# -- warm-up: train only the new rows -------------------------------------------------------------
def _embedding_weights(model: Any) -> list[torch.nn.Parameter]:
    weights = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not weights[0] and out.weight.data_ptr() != weights[0].data_ptr():
        weights.append(out.weight)
    return weights


def freeze_all_but_rows(model: Any, rows: Sequence[int]) -> list[Any]:
    """Freeze every parameter except the input (and untied output) embedding matrices, whose
    gradients are masked by a hook to ``rows`` only. Tied embeddings share one parameter, so one hook
    covers both uses. Returns the hook handles (give them to :func:`unfreeze`).

    With zero gradients and zero weight decay AdamW leaves a row exactly unchanged, so the optimiser
    of this phase must use ``weight_decay=0``.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    handles = []
    for w in _embedding_weights(model):
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[torch.as_tensor(list(rows), dtype=torch.long, device=w.device)] = 1
        w.requires_grad_(True)
        handles.append(w.register_hook(lambda g, m=mask: g * m.to(g.dtype)))
    return handles


def unfreeze(model: Any, handles: Sequence[Any]) -> None:
    for h in handles:
        h.remove()
    for p in model.parameters():
        p.requires_grad_(True)


# -- losses ---------------------------------------------------------------------------------------
def tokenize_example(tokenizer: Any, prompt: str, completion: str, max_len: int | None = None
                     ) -> tuple[list[int], list[int]]:
    """``(input_ids, completion_mask)`` exactly as TRL's SFTTrainer builds them for a
    prompt-completion example: EOS appended to the completion, the completion starting where the
    tokenised prompt and prompt+completion diverge, truncated to ``max_len`` from the right."""
    eos = tokenizer.eos_token or ""
    if eos and not completion.endswith(eos):
        completion = completion + eos
    p_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion)["input_ids"]
    n = 0
    for a, b in zip(p_ids, ids):
        if a != b:
            break
        n += 1
    mask = [0] * n + [1] * (len(ids) - n)
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return list(ids), mask


@torch.no_grad()
def task_losses(model: Any, tokenizer: Any, examples: pd.DataFrame, max_len: int, batch_size: int = 16
                ) -> dict[str, dict[str, float]]:
    """Per task: mean cross-entropy per completion token (``loss``), its ``ppl``, ``examples`` and
    ``tokens``, on ``examples`` (columns task, prompt, completion)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums: dict[str, list[float]] = {}
    rows = [(t, *tokenize_example(tokenizer, p, c, max_len))
            for t, p, c in zip(examples["task"], examples["prompt"], examples["completion"])]
    rows.sort(key=lambda r: len(r[1]))  # less padding
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r[1]) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        lab = torch.full((len(batch), width), -100, dtype=torch.long)
        for j, (_, x, m) in enumerate(batch):
            ids[j, :len(x)] = torch.tensor(x)
            att[j, :len(x)] = 1
            lab[j, :len(x)] = torch.tensor([xi if mi else -100 for xi, mi in zip(x, m)])
        logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float()
        tgt = lab[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100, reduction="none"
        ).view(tgt.shape)
        for j, (task, _, _) in enumerate(batch):
            valid = tgt[j] != -100
            s = sums.setdefault(task, [0.0, 0.0, 0.0])
            s[0] += float(nll[j][valid].sum())
            s[1] += float(valid.sum())
            s[2] += 1
    if was_training:
        model.train()
    out = {}
    for task, (total, tokens, n) in sums.items():
        loss = total / max(tokens, 1.0)
        out[task] = {"loss": round(loss, 4), "ppl": round(math.exp(min(loss, 50.0)), 3),
                     "examples": int(n), "tokens": int(tokens)}
    return out


# -- one SFT phase --------------------------------------------------------------------------------
def trainer_defaults(cfg: Any, device: str) -> dict[str, Any]:
    """The training arguments every TRL stage shares: CPU-safe precision and checkpointing (TRL 1.16
    defaults ``bf16`` and activation checkpointing to True, 16× slower on these CPUs — resources.md),
    checkpoints, logging, seeds and a progress bar. ``cfg`` has ``save_steps``, ``save_total_limit``,
    ``logging_steps`` and ``seed``."""
    cuda = device.startswith("cuda")
    return dict(
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        fp16=False,
        activation_checkpointing=False,  # TRL defaults it (alias gradient_checkpointing) to True
        use_cpu=not cuda,
        save_strategy="steps",
        save_steps=max(1, cfg.save_steps),
        save_total_limit=cfg.save_total_limit,
        logging_steps=max(1, cfg.logging_steps),
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,  # a progress bar on long work
    )


def sft_args(cfg: MidtrainConfig | StageSFTConfig, output_dir: Path, steps: int, lr: float, weight_decay: float,
             warmup_ratio: float, device: str) -> Any:
    """TRL ``SFTConfig`` with the CPU-safe settings; ``cfg`` is any stage config with ``batch_size``,
    ``grad_accum``, ``max_seq_len``, ``save_steps``, ``save_total_limit``, ``logging_steps``, ``seed``."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=lr,
        weight_decay=weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(round(warmup_ratio * steps)),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_seq_len,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
        **trainer_defaults(cfg, device),
    )


def run_phase(model: Any, tokenizer: Any, train: pd.DataFrame | Dataset, args: Any, tb_dir: Path,
              peft_config: Any = None, trainer_cls: type | None = None, callbacks: Sequence[Any] = (),
              **trainer_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Train one phase with TRL's SFTTrainer; resumes from the latest checkpoint in
    ``args.output_dir``. Returns ``(trained model, info)``; info has ``resumed_from``, ``global_step``,
    ``train_loss``, ``seconds``, ``tokens`` (non-padding tokens this process trained on) and ``log``.

    ``train`` is a DataFrame with ``prompt``/``completion`` columns or a ready ``datasets.Dataset``
    (e.g. pre-tokenised); ``trainer_cls`` (an ``SFTTrainer`` subclass, default ``SFTTrainer``) gets
    ``trainer_kwargs`` on top of the usual arguments (the ``sft`` stage's weighted loss);
    ``callbacks`` are added to TensorBoard's (the ``sft`` stage's learning curve)."""
    import time

    from datasets import Dataset
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback
    from trl import SFTTrainer

    ds = train if isinstance(train, Dataset) else Dataset.from_pandas(
        train[["prompt", "completion"]].reset_index(drop=True), preserve_index=False)
    tb_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(tb_dir))
    trainer = (trainer_cls or SFTTrainer)(
        model=model, args=args, train_dataset=ds, processing_class=tokenizer, peft_config=peft_config,
        callbacks=[TensorBoardCallback(tb_writer=writer), *callbacks], **trainer_kwargs)
    ckpt = latest_checkpoint(Path(args.output_dir))
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    seconds = time.perf_counter() - start
    writer.close()
    info = {
        "resumed_from": ckpt.name if ckpt is not None else None,
        "global_step": int(trainer.state.global_step),
        "train_loss": round(float(result.training_loss), 4),
        "seconds": round(seconds, 2),
        "tokens": int(getattr(trainer, "_total_train_tokens", 0)),  # TRL's running count (not checkpointed)
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }
    return trainer.model, info


def train_and_save(trainer: Any, checkpoint: Path | None, lora: bool, tokenizer: Any, model_dir: Path
                   ) -> tuple[Any, Any, float]:
    """``trainer.train()`` (resuming from ``checkpoint``), then the trained model — LoRA merged when
    ``lora`` — saved to ``model_dir``; returns ``(model, train output, seconds of training)``."""
    import time

    from gr2.runs import save_model

    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    seconds = time.perf_counter() - start
    model = trainer.model.merge_and_unload() if lora else trainer.model
    save_model(model, tokenizer, model_dir)
    return model, result, seconds


def start_training(model: Any, cfg: Any) -> str:
    """The set-up of an SFT-stage training run: seed, CPU threads, the device (the model is moved
    there) and ``cfg.train_top_layers``; returns the device."""
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    model.to(device)
    if cfg.train_top_layers:
        train_top_layers(model, cfg.train_top_layers)
    return device


def train_top_layers(model: Any, n: int) -> None:
    """Freeze every parameter except those of the top ``n`` decoder layers and the final norm. Nothing
    below the lowest trained layer then requires a gradient, so the backward pass stops there
    (``benchmarks/listwise_step_time.py`` measures the saving)."""
    layers = model.get_decoder().layers
    if not 1 <= n <= len(layers):
        raise ValueError(f"train_top_layers={n}: the model has {len(layers)} decoder layers")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in [*layers[len(layers) - n:], model.get_decoder().norm]:
        for p in module.parameters():
            p.requires_grad_(True)
