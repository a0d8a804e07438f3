"""Training runs on TRL / transformers trainers, shared by the training stages: the CPU-safe
arguments, one phase with TensorBoard, checkpoints and resume, and saving the trained model.

CPU-safe by construction (docs/resources.md): ``bf16`` only on a CUDA device that supports it,
activation (gradient) checkpointing off always, ``use_cpu=True`` without CUDA.

Launched as several processes (``accelerate launch``), a stage's ``batch_size`` is the global batch,
split over the processes, and only the main process writes (:mod:`gr2.training.dist`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(folder: Path) -> Path | None:
    """The ``checkpoint-N`` sub-folder with the largest N (``None`` when there is none)."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    found = [(n, p) for n, p in found if (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def epoch_steps(cfg: Any, n_examples: int) -> int:
    """``cfg.steps`` when set, else the optimiser steps of ``cfg.epochs`` passes over ``n_examples``
    (``batch_size × grad_accum`` examples a step, over all processes)."""
    return cfg.steps or max(1, math.ceil(cfg.epochs * n_examples / (cfg.batch_size * cfg.grad_accum)))


def device_batch(cfg: Any, examples: int | None = None, what: str = "batch_size") -> int:
    """The per-process micro-batch of ``cfg``: ``examples`` a micro-step over all processes (default
    ``cfg.batch_size``) split by :func:`gr2.training.dist.per_device_batch`, whose error names ``what``
    of the stage's section."""
    from gr2.training.dist import per_device_batch

    section = type(cfg).__name__.removesuffix("Config").lower()
    return per_device_batch(cfg.batch_size if examples is None else examples, f"{section}.{what}")


def trainer_defaults(cfg: Any, device: str) -> dict[str, Any]:
    """The training arguments every TRL stage shares: CPU-safe precision and checkpointing (TRL 1.16
    defaults ``bf16`` and activation checkpointing to True, 16× slower on these CPUs — resources.md),
    checkpoints, logging, seeds and a progress bar. ``cfg`` has ``save_steps``, ``save_total_limit``,
    ``logging_steps``, ``seed``, ``torch_compile`` and ``liger_kernels`` (a
    :class:`~gr2.training.config.TrainingFields`)."""
    cuda = device.startswith("cuda")
    return {
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "fp16": False,
        "activation_checkpointing": False,  # TRL defaults it (alias gradient_checkpointing) to True
        "use_cpu": not cuda,
        "save_strategy": "steps",
        "save_steps": max(1, cfg.save_steps),
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": max(1, cfg.logging_steps),
        "report_to": "none",
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,  # a progress bar on long work
        "torch_compile": cfg.torch_compile,
        "use_liger_kernel": cfg.liger_kernels,
    }


def sft_args(cfg: Any, output_dir: Path, steps: int, lr: float, weight_decay: float, warmup_ratio: float,
             device: str) -> Any:
    """TRL ``SFTConfig`` with the CPU-safe settings; ``cfg`` is any stage config with ``batch_size``,
    ``grad_accum``, ``max_seq_len``, ``save_steps``, ``save_total_limit``, ``logging_steps``, ``seed``."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=lr,
        weight_decay=weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=round(warmup_ratio * steps),
        per_device_train_batch_size=device_batch(cfg),
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_seq_len,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
        train_sampling_strategy="group_by_length" if getattr(cfg, "group_by_length", False) else "random",
        **trainer_defaults(cfg, device),
    )


@contextlib.contextmanager
def compact_lm_head(enabled: bool = True) -> Iterator[None]:
    """Inside: TRL's fused LM head (``SFTTrainer``'s loss) projects only the positions whose label is
    not -100, on every device. TRL 1.16 decides that with ``_use_triton(device)`` because on
    compiled backends a changing number of positions recompiles the kernel; in eager mode on CPU the
    compact path is the same computation on fewer rows. Without the hook TRL exposes
    (``trl.trainer.utils._use_triton``) nothing changes, with a warning."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:
        if enabled:
            log.warning("compact_lm_head: this TRL version has no _use_triton hook; every position is projected")
        yield
        return
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


class _NoWriter:
    """The writer of a process that writes no TensorBoard events (not the main one)."""

    def close(self) -> None:
        pass


def tensorboard(tb_dir: Path) -> tuple[Any, Any]:
    """``(TensorBoard callback, its writer)`` logging under ``tb_dir``; close the writer after training.
    Only the main process writes events (a writer creates its file at once, so the others get none)."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    from gr2.training.dist import is_main

    if not is_main():
        return TensorBoardCallback(), _NoWriter()  # it writes on the main process only
    tb_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(tb_dir))
    return TensorBoardCallback(tb_writer=writer), writer


def run_phase(model: Any, tokenizer: Any, train: pd.DataFrame | Dataset, args: Any, tb_dir: Path,
              peft_config: Any = None, trainer_cls: type | None = None, callbacks: Sequence[Any] = (),
              compact_head: bool = True, save_dir: Path | None = None, **trainer_kwargs: Any
              ) -> tuple[Any, dict[str, Any]]:
    """Train one phase with TRL's SFTTrainer; resumes from the latest checkpoint in
    ``args.output_dir``. Returns ``(trained model, info)``; info has ``resumed_from``, ``global_step``,
    ``train_loss``, ``seconds``, ``tokens`` (non-padding tokens trained on, gathered over the processes by
    TRL; counted since the start or resume) and ``log``.

    ``train`` is a DataFrame with ``prompt``/``completion`` columns or a ready ``datasets.Dataset``
    (e.g. pre-tokenised); ``trainer_cls`` (an ``SFTTrainer`` subclass, default ``SFTTrainer``) gets
    ``trainer_kwargs`` on top of the usual arguments (the ``sft`` stage's weighted loss);
    ``callbacks`` are added to TensorBoard's (the ``sft`` stage's learning curve); ``compact_head``:
    :func:`compact_lm_head` (a stage passes its ``compact_lm_head`` field); ``save_dir``: the trained
    model (LoRA merged when ``peft_config``) and ``tokenizer`` are saved there
    (:func:`gr2.training.dist.save_model`: the main process writes) and the returned model is that one."""
    from datasets import Dataset
    from trl import SFTTrainer

    ds = train if isinstance(train, Dataset) else Dataset.from_pandas(
        train[["prompt", "completion"]].reset_index(drop=True), preserve_index=False)
    tb_callback, writer = tensorboard(tb_dir)
    trainer = (trainer_cls or SFTTrainer)(
        model=model, args=args, train_dataset=ds, processing_class=tokenizer, peft_config=peft_config,
        callbacks=[tb_callback, *callbacks], **trainer_kwargs)
    ckpt = latest_checkpoint(Path(args.output_dir))
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    with compact_lm_head(compact_head):
        result, seconds = timed_train(trainer, ckpt)
    writer.close()
    model = trainer.model if save_dir is None else save_trained(trainer, peft_config is not None, tokenizer, save_dir)
    info = {
        **train_info(trainer, ckpt, result, seconds),
        "tokens": int(getattr(trainer, "_total_train_tokens", 0)),  # TRL's running count (not checkpointed)
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }
    return model, info


def timed_train(trainer: Any, checkpoint: Path | None) -> tuple[Any, float]:
    """``trainer.train()``, resuming from ``checkpoint``: ``(train output, seconds of training)``."""
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    return result, time.perf_counter() - start


def train_info(trainer: Any, checkpoint: Path | None, result: Any, seconds: float, digits: int = 4) -> dict[str, Any]:
    """What a training call reports: ``resumed_from`` (checkpoint name), ``global_step``,
    ``train_loss`` (mean over the run, rounded to ``digits``) and ``seconds``."""
    return {
        "resumed_from": checkpoint.name if checkpoint is not None else None,
        "global_step": int(trainer.state.global_step),
        "train_loss": round(float(result.training_loss), digits),
        "seconds": round(seconds, 2),
    }


def train_and_save(trainer: Any, checkpoint: Path | None, lora: bool, tokenizer: Any, model_dir: Path
                   ) -> tuple[Any, Any, float]:
    """:func:`timed_train`, then the trained model — LoRA merged when ``lora`` — saved to ``model_dir``
    (by the main process: :func:`gr2.training.dist.save_model`); returns ``(model, train output,
    seconds of training)``."""
    result, seconds = timed_train(trainer, checkpoint)
    return save_trained(trainer, lora, tokenizer, model_dir), result, seconds


def save_trained(trainer: Any, lora: bool, tokenizer: Any, model_dir: Path) -> Any:
    """The trainer's model — LoRA merged when ``lora`` — saved with ``tokenizer`` to ``model_dir`` by
    the main process (:func:`gr2.training.dist.save_model`); returns it."""
    from gr2.training.dist import save_model

    model = trainer.model.merge_and_unload() if lora else trainer.model
    save_model(model, tokenizer, model_dir, trainer)
    return model
