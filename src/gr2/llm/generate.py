"""Batched free-text generation with a local transformers model, every parameter explicit.

Used by the local teacher (``gr2.traces``) and by re-ranking evaluation (``gr2.eval.rerank``).
A checkpoint's saved generation defaults (sampling on, a repetition penalty, a different max length,
…) must not silently change results. We build a fresh :class:`transformers.GenerationConfig` from
:class:`GenerationParams`; transformers 5.x fills every field left ``None`` from the model's
``generation_config`` (it has no switch to turn that off), so every field that changes the decoding
here is set explicitly (``top_k=0`` when sampling without a top-k filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GenerationParams", "generation_config", "generate_texts", "generate_chat"]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings, all explicit (none inherited from a model's ``generation_config``)."""

    max_new_tokens: int = 512
    """Tokens generated per answer at most."""
    temperature: float = 0.0
    """0 means greedy decoding; > 0 samples with this temperature."""
    top_p: float = 1.0
    """Nucleus-sampling mass (sampling only)."""
    top_k: int = 0
    """Top-k filter (sampling only; 0 = off)."""
    repetition_penalty: float = 1.0
    """1.0 = off."""
    seed: int | None = 0
    """Seeds torch before each batch so sampled answers are reproducible (``None``: not reseeded)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generation_config(params: GenerationParams, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kw: dict[str, Any] = dict(
        max_new_tokens=params.max_new_tokens, do_sample=params.do_sample, num_beams=1,
        repetition_penalty=params.repetition_penalty, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
    )
    if params.do_sample:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)  # 0: off
    else:  # neutral values; greedy ignores them (top_k None: its default, so transformers does not warn)
        kw.update(temperature=1.0, top_p=1.0, top_k=None)
    return GenerationConfig(**kw)


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    params: GenerationParams | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> list[str]:
    """Continuations of already-templated ``prompts`` (special tokens stripped), in input order.

    Prompts are left-padded in batches of ``batch_size``; prompts of similar length are batched
    together (less padding), answers are returned in the original order.
    """
    import torch

    params = params or GenerationParams()
    if not prompts:
        return []
    config = generation_config(params, tokenizer)
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = bool(getattr(model, "training", False))
    model.eval()
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generate", unit="batch")
    try:
        for b, idx in enumerate(batches):
            if params.seed is not None:
                torch.manual_seed(params.seed + b)
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            with torch.no_grad():
                gen = model.generate(**enc, generation_config=config)
            new = gen[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                out[i] = tokenizer.decode(row, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return out


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    params: GenerationParams | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> list[str]:
    """Assistant replies to chat ``conversations`` (lists of ``{"role", "content"}``), rendered with
    the tokenizer's chat template (ChatML when it has none)."""
    from gr2.prompts.chat import apply_chat_template

    prompts = [apply_chat_template(tokenizer, c, add_generation_prompt=True, fallback="chatml")
               for c in conversations]
    return generate_texts(model, tokenizer, prompts, params, batch_size=batch_size, progress=progress)
