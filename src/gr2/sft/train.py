"""Weighted-loss SFT (docs/method.md §6) on TRL's ``SFTTrainer``.

Examples are tokenised here, not by TRL, because the loss weights need character offsets: the
prompt is the tokenizer's chat template of ``messages`` with the generation prompt
(:func:`gr2.prompts.chat.apply_chat_template`, ChatML when the tokenizer has none); the completion
is the assistant text followed by the template's end-of-turn token (:func:`gr2.prompts.chat.end_of_turn`). The
completion starts where the tokenised prompt and prompt+completion diverge, as in TRL. Each token
gets a part id (:mod:`gr2.sft.weights`), carried as a ``token_parts`` column next to ``input_ids``
and ``labels``; TRL keeps pre-tokenised datasets as they are (and still truncates and filters them).

:class:`WeightedSFTTrainer` multiplies TRL's per-token log-probabilities by ``(0, λ_r, λ_o)[part]``
just before TRL reduces them, so every TRL feature of the loss path stays (fused LM head, gradient
accumulation and multi-device token counts through ``num_items_in_batch``, entropy/accuracy metrics,
MoE aux loss). The loss is therefore

    ``L = Σ_t w_t · NLL_t / N``,  N = number of completion tokens (prompt tokens excluded),

i.e. docs/method.md's ``−λ_r Σ log P(reasoning) − λ_o Σ log P(ranking)`` divided by the token count TRL
already uses. Chosen over ``/ Σ w_t`` because (1) λ_r = λ_o = 1 is exactly TRL's standard SFT loss, so
the λ's are absolute multipliers as in the paper's formula and runs with different λ's differ only in
the down-weighted tokens (with ``/ Σ w`` halving λ_r would also scale up the ranking tokens' gradient,
by a factor that changes with each batch's reasoning/ranking mix); (2) the denominator does not
depend on the weights, so TRL's gradient-accumulation normalisation stays correct. The price: with
λ_r = 0 the ranking gradient is diluted by the explanation length (like a smaller learning rate).

Not supported (checked): packing and padding-free batches (they drop or flatten the part column),
``loss_type="dft"``, label smoothing, ``compute_loss_func``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from trl import SFTTrainer

from gr2.prompts.chat import apply_chat_template, end_of_turn
from gr2.runs import atomic_write_json
from gr2.sft.config import SFTConfig
from gr2.sft.weights import (
    PROMPT,
    RANKING,
    REASONING,
    part_weights,
    ranking_start,
    token_parts,
)

log = logging.getLogger(__name__)

PARTS = "token_parts"
"""Dataset/batch column with each token's part id (0 prompt, 1 reasoning, 2 ranking)."""
def encode_example(tokenizer: Any, messages: Sequence[Mapping[str, str]], completion: str,
                   eot: str | None = None) -> dict[str, list[int]]:
    """``input_ids``, ``labels`` (-100 on the prompt) and ``token_parts`` of one example.
    ``eot``: :func:`end_of_turn` (computed when ``None``). Special tokens come from the template
    only (``add_special_tokens=False``, as :mod:`gr2.llm.generate` tokenises prompts)."""
    from trl.data_utils import common_prefix_length

    prompt = apply_chat_template(tokenizer, messages, add_generation_prompt=True, fallback="chatml")
    target = completion + (end_of_turn(tokenizer) if eot is None else eot)
    enc = tokenizer(prompt + target, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    n_prompt = common_prefix_length(tokenizer(prompt, add_special_tokens=False)["input_ids"], ids)
    parts = token_parts(enc["offset_mapping"], n_prompt, len(prompt) + ranking_start(completion))
    return {"input_ids": ids, "labels": [t if p != PROMPT else -100 for t, p in zip(ids, parts)], PARTS: parts}


class _PartsCollator:
    """TRL's collator, plus ``token_parts`` padded on the right with :data:`PROMPT` like the labels."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        parts = torch.full(batch["labels"].shape, PROMPT, dtype=torch.long)
        for row, ex in zip(parts, examples):
            row[:len(ex[PARTS])] = torch.as_tensor(ex[PARTS], dtype=torch.long)
        batch[PARTS] = parts
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss weighs reasoning tokens by λ_r and ranking tokens by λ_o (module
    docstring). Logs, besides TRL's metrics, ``nll_reasoning``/``nll_ranking`` (mean NLL per token of
    each part: comparable across λ's) and ``loss_reasoning``/``loss_ranking`` (each part's weighted
    contribution per completion token of the micro-batch: they sum to the loss without gradient
    accumulation); with several processes, of the micro-batch over all of them."""

    def __init__(self, *args: Any, lambda_reasoning: float, lambda_ranking: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.args
        unsupported = {"packing": a.packing, "padding_free": self.padding_free,
                       "loss_type='dft'": a.loss_type != "nll", "label smoothing": a.label_smoothing_factor > 0,
                       "compute_loss_func": self.compute_loss_func is not None}
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise ValueError(f"WeightedSFTTrainer does not support {', '.join(bad)}")
        self.part_weights = torch.tensor(part_weights(lambda_reasoning, lambda_ranking))
        self.data_collator = _PartsCollator(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if PARTS not in self._signature_columns:  # else Trainer drops the column before collation
            self._signature_columns = [*self._signature_columns, PARTS]

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        parts = inputs.pop(PARTS)[:, 1:]  # part of each next-token label, aligned with TRL's log_probs
        weights = self.part_weights.to(parts.device)[parts]
        mode = "train" if self.model.training else "eval"

        def reweight(module: Any, args: Any, output: Any) -> Any:
            log_probs = getattr(output, "log_probs", None)
            if log_probs is None:  # a forward without TRL's fused head (e.g. logits for metrics)
                return None
            self._log_parts(log_probs.detach(), parts, mode)
            output.log_probs = log_probs * weights.to(log_probs.dtype)
            return output

        handle = model.register_forward_hook(reweight)
        try:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        finally:
            handle.remove()

    def _log_parts(self, log_probs: torch.Tensor, parts: torch.Tensor, mode: str) -> None:
        named = (("reasoning", REASONING), ("ranking", RANKING))
        log_probs = log_probs.float()
        sums = torch.stack([x for _, part in named for x in (-(log_probs * (parts == part)).sum(),
                                                                (parts == part).sum().float())]
                           + [(parts != PROMPT).sum().float()])
        if self.accelerator.num_processes > 1:  # the micro-batch of every process, as TRL's own metrics
            sums = self.accelerator.reduce(sums, reduction="sum")
        n_completion = sums[-1].clamp(min=1)
        for i, (name, part) in enumerate(named):
            nll, n = sums[2 * i], sums[2 * i + 1]
            if n == 0:
                continue
            self._metrics[mode][f"nll_{name}"].append((nll / n).item())
            self._metrics[mode][f"loss_{name}"].append((nll * self.part_weights[part] / n_completion).item())


def encode_examples(tokenizer: Any, examples: Sequence[Mapping[str, Any]], max_len: int | None
                    ) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Every example encoded (:func:`encode_example`) and token statistics: ``examples``,
    ``truncated`` (examples whose completion was cut by ``max_len``), ``prompt_too_long`` (of those, the
    ones left without a completion token: dropped), ``tokens``, ``reasoning_tokens``, ``ranking_tokens``
    (after truncation)."""
    eot = end_of_turn(tokenizer)
    rows, truncated, no_completion = [], 0, 0
    for i, ex in enumerate(examples):
        try:
            row = encode_example(tokenizer, ex["messages"], ex["completion"], eot)
        except ValueError as exc:
            raise ValueError(f"SFT example {ex.get('example_id', i)}: {exc}") from exc
        if max_len is not None and len(row["input_ids"]) > max_len:
            truncated += 1
            row = {k: v[:max_len] for k, v in row.items()}
            if row[PARTS].count(REASONING) + row[PARTS].count(RANKING) == 0:
                no_completion += 1  # the prompt alone fills max_len: nothing to learn from
                continue
        rows.append(row)
    stats = {"examples": len(rows), "truncated": truncated, "prompt_too_long": no_completion,
             "tokens": sum(len(r["input_ids"]) for r in rows),
             "reasoning_tokens": sum(r[PARTS].count(REASONING) for r in rows),
             "ranking_tokens": sum(r[PARTS].count(RANKING) for r in rows)}
    return rows, stats


def _first_last(history: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    values = [h[key] for h in history if key in h]
    return (values[0], values[-1]) if values else (None, None)


def train_sft(model: Any, tokenizer: Any, examples: Sequence[Mapping[str, Any]], cfg: SFTConfig,
              out_dir: Path, meta: Mapping[str, Any] | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Weighted-loss SFT of ``model`` on ``examples`` (``{"messages": [...], "completion": str}``),
    usable without a run directory. Writes under ``out_dir``: ``checkpoints/checkpoint-N`` (a re-call
    resumes from the latest), ``tb/`` (TensorBoard), ``model/`` (``save_pretrained`` + tokenizer,
    written atomically; LoRA merged) and ``metrics.json`` (``meta`` first, then the training
    metrics); ``callbacks`` go to the trainer (the learning curve); returns the metrics."""
    from datasets import Dataset

    from gr2.training.dist import is_main
    from gr2.training.loop import epoch_steps, run_phase, sft_args
    from gr2.training.setup import lora_config, start_training

    if not examples:
        raise ValueError("no SFT examples")
    out_dir = Path(out_dir)
    rows, stats = encode_examples(tokenizer, examples, cfg.max_seq_len)
    if not rows:
        raise ValueError(f"every SFT example's prompt is longer than sft.max_seq_len={cfg.max_seq_len} tokens: "
                         "raise it or shorten the prompts (traces.prompt.max_history, item_format=compact)")
    device = start_training(cfg, model)
    if stats["truncated"]:
        log.warning("sft: %d of %d examples longer than max_seq_len=%d: their completion is cut",
                    stats["truncated"], stats["examples"], cfg.max_seq_len)
    args = sft_args(cfg, out_dir / "checkpoints", epoch_steps(cfg, len(rows)), cfg.lr, cfg.weight_decay,
                    cfg.lr_warmup_ratio, device)
    peft_config = lora_config(cfg) if cfg.lora else None
    t0 = time.perf_counter()
    model, info = run_phase(model, tokenizer, Dataset.from_list(rows), args, out_dir / "tb", peft_config,
                            trainer_cls=WeightedSFTTrainer, callbacks=callbacks, compact_head=cfg.compact_lm_head,
                            save_dir=out_dir / "model", lambda_reasoning=cfg.lambda_reasoning,
                            lambda_ranking=cfg.lambda_ranking)
    history = info.pop("log")
    metrics: dict[str, Any] = {
        **(meta or {}),
        "objective": "traces",
        "device": device,
        "lambda_reasoning": cfg.lambda_reasoning,
        "lambda_ranking": cfg.lambda_ranking,
        "data": stats,
        "steps": info["global_step"],
        **{f"{key}_{end}": v for key in ("loss", "nll_reasoning", "nll_ranking", "loss_reasoning", "loss_ranking")
           for end, v in zip(("start", "end"), _first_last(history, key))},
        "train_loss_mean": info["train_loss"],
        "resumed_from": info["resumed_from"],
        "train_seconds": info["seconds"],
        "tokens_per_second": round(info["tokens"] / info["seconds"], 1) if info["seconds"] > 0 else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "log": history,
    }
    if is_main():
        atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
