"""Several training processes (``accelerate launch``, ``torchrun``): who writes the run's files, who
waits, and how many examples each process trains on.

Launched as N processes, every process runs the same stage code and trains its share of each batch
(TRL / transformers on accelerate: DDP, DeepSpeed or FSDP). The run directory is written by **the
main process only** (global rank 0): the manifest, ``config.yaml``, example files, metrics, logs,
TensorBoard events and model folders; the others compute the same things and skip the write, or
wait at a :func:`barrier` where they read what the main one wrote (mid-training's examples). With
one process (no launcher) every function here is a no-op that imports nothing: :func:`is_main` is
true, :func:`barrier` returns at once, the batch is not split.

**Batch size.** A stage's ``batch_size`` is the *global* micro-batch: the examples (SFT, mid-training;
prompts for DAPO) of one optimisation micro-step summed over all processes, so an optimisation step
trains on ``batch_size × grad_accum`` examples whatever the process count. Each of N processes gets
``batch_size / N`` (:func:`per_device_batch`; a clear error when it does not divide). transformers'
sampler shuffles the dataset once (seeded by ``seed``, independently of N) and accelerate hands the
N processes consecutive slices of it, so step t trains on the same examples with 1 or N processes
and a checkpoint resumes under another process count at the same place of the data (except at an
epoch's incomplete last batch, which accelerate completes with examples from the epoch's start, and
with ``group_by_length``, whose length groups are built per process batch).

The run directory must be on a file system every process sees (one machine, or a shared mount for
several).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from gr2.checks import ConfigError

__all__ = ["TIMEOUT", "barrier", "is_distributed", "is_main", "launched_processes", "local_device",
           "per_device_batch", "refuse_sharded", "save_model", "sharded_weights"]

_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
"""Where launchers put the process count (torchrun / ``accelerate launch``; MPI)."""

TIMEOUT = dt.timedelta(hours=3)
"""How long a process waits at a barrier (the process group's timeout). Stages that are not
multi-process (data … traces, eval) run on the main process while the others wait here, so a
``gr2 run`` of every stage under ``accelerate launch`` needs them to finish within it; run them in one
process instead (README, "GPUs and large teachers")."""


def launched_processes() -> int:
    """The process count a launcher set in the environment (1 without a launcher)."""
    for var in _SIZE_VARS:
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def is_distributed() -> bool:
    """True when this process is one of several."""
    return launched_processes() > 1


def _state() -> Any:
    """accelerate's ``PartialState`` (the process group is created on first use), on the CPU when
    there is no CUDA or the launcher asked for the CPU, as the stages' ``TrainingArguments`` do."""
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=cpu, timeout=TIMEOUT)


def is_main() -> bool:
    """True on the process that writes the run directory (global rank 0; always without a launcher)."""
    return not is_distributed() or _state().is_main_process


def barrier() -> None:
    """Wait until every process gets here (nothing in one process)."""
    if is_distributed():
        _state().wait_for_everyone()


def local_device(device: str) -> str:
    """``cuda`` → this process's GPU (``cuda:LOCAL_RANK``) when launched as several processes;
    anything else unchanged."""
    if device == "cuda" and is_distributed():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def per_device_batch(batch_size: int, name: str = "batch_size", processes: int | None = None) -> int:
    """``batch_size`` (the global micro-batch, see the module docstring) split over the processes;
    a :class:`~gr2.checks.ConfigError` naming ``name`` when it does not divide evenly."""
    n = launched_processes() if processes is None else processes
    if batch_size % n:
        raise ConfigError(
            f"{name}={batch_size} is the global batch, split evenly over the {n} training processes: "
            f"it must be a multiple of {n} (or launch a number of processes that divides it)")
    return batch_size // n


def sharded_weights() -> str | None:
    """The engine the launcher asked for when it shards the weights over the processes (``FSDP``,
    ``DeepSpeed ZeRO-3``), else ``None`` (one process, DDP, ZeRO-1/2: every process holds the whole
    model)."""
    if not is_distributed():
        return None
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" and _zero_stage() == 3:
        return "DeepSpeed ZeRO-3"
    return None


def _zero_stage() -> int | None:
    """The ZeRO stage of a DeepSpeed launch: ``zero_stage`` of the accelerate config, or
    ``zero_optimization.stage`` of the DeepSpeed JSON file it names."""
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage:
        return int(stage)
    path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if path and Path(path).is_file():
        import json

        stage = json.loads(Path(path).read_text(encoding="utf-8")).get("zero_optimization", {}).get("stage")
        return int(stage) if isinstance(stage, int) else None
    return None


def refuse_sharded(what: str) -> None:
    """A :class:`~gr2.checks.ConfigError` when the weights are sharded (:func:`sharded_weights`) and
    ``what`` needs every process to hold the whole model."""
    engine = sharded_weights()
    if engine is not None:
        raise ConfigError(f"{what} needs the whole model on every process, which {engine} does not keep: "
                          "launch with DDP or DeepSpeed ZeRO-2 (configs/accelerate/)")


def save_model(model: Any, tokenizer: Any, path: Path, trainer: Any = None) -> None:
    """:func:`gr2.runs.save_model` (atomic ``save_pretrained`` of the model and its tokenizer) on the
    main process, then :func:`barrier`. Called by every process: with sharded weights (FSDP, ZeRO-3;
    ``trainer`` given) the full state dict is first gathered from all of them."""
    from gr2.runs import save_model as save

    state_dict = None
    if trainer is not None and sharded_weights() is not None:
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # collective
        model = trainer.accelerator.unwrap_model(model)
    if is_main():
        save(model, tokenizer, Path(path), state_dict)
    barrier()
