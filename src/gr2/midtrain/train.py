"""What only the ``midtrain`` stage trains with: the SID token ids, the embeddings-only warm-up and
per-task held-out losses. The training phases themselves run on :mod:`gr2.training`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch


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
