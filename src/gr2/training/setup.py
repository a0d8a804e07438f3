"""Set-up shared by the training stages: seed, CPU threads, the device, LoRA adapters and top-layer
freezing. CPU-safe by construction (docs/resources.md): the device is CUDA only when asked for or
available."""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; a CUDA device asked for without CUDA is an error.
    Launched as several processes, ``cuda`` is this process's own GPU (:func:`gr2.training.dist.local_device`)."""
    from gr2.training.dist import local_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return local_device(device)


def start_training(cfg: Any, model: Any = None) -> str:
    """The set-up of a training run: seed, CPU threads and the device; when ``model`` is given it is
    moved there and ``cfg.train_top_layers`` (where the config has the field) applied. ``cfg`` is a
    :class:`~gr2.training.config.TrainingFields`; returns the device."""
    if getattr(cfg, "lora", False):
        from gr2.training.dist import refuse_sharded

        refuse_sharded("LoRA (the adapters are merged into the saved model)")
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    if cfg.liger_kernels:
        check_liger(device)
    if model is not None:
        model.to(device)
        if getattr(cfg, "train_top_layers", None):
            train_top_layers(model, cfg.train_top_layers)
    return device


def check_liger(device: str) -> None:
    """A :class:`~gr2.checks.ConfigError` unless Liger's kernels can run: a CUDA device (they are Triton
    kernels) and the ``liger-kernel`` package."""
    import importlib.util

    from gr2.checks import ConfigError

    if not device.startswith("cuda"):
        raise ConfigError(f"liger_kernels=true needs a CUDA device (Liger's kernels are Triton kernels); "
                          f"this stage trains on {device!r}: set liger_kernels=false")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("liger_kernels=true needs the liger-kernel package: pip install liger-kernel")


def lora_config(cfg: Any) -> Any:
    """PEFT's ``LoraConfig`` from the LoRA fields of ``cfg`` (:class:`~gr2.training.config.TrainingFields`)."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")


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
