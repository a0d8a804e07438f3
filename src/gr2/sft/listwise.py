"""The listwise objective: train the score we serve.

The eval's direct rows and the server rank a list by each candidate's log-probability of being
written first (:func:`gr2.llm.scoring.direct_logprobs`: all K candidates in one forward pass over
the prompt and the candidate trie). The trace SFT objective trains that score only indirectly,
through the tokens of a few hundred generated rankings. Here the same scores ``s_1..s_K`` of a
training list are the logits of a softmax over the candidates, and the loss is

    ``L = w_ce · CE(softmax(a·s + o), target) + w_distill · ListNet(softmax(teacher / T), softmax(a·s + o))``

per list, averaged over the batch: cross-entropy against the true next item (as LlamaRec trains its
index-letter logits), plus an optional distillation of a teacher's whole order, where the teacher is
the pre-ranker (the candidates' ``scores`` column, temperature ``T``). Both weights and ``T`` are
fields of :class:`gr2.sft.config.SFTConfig`. ``o`` is zero and ``a`` one unless
``listwise_position_prior`` is on: then a list shown in the pre-ranker's order adds to each candidate
the log-prior of the position it is shown at (:class:`gr2.llm.scoring.PositionPrior`, estimated from
all training lists and saved with the model), so the model learns only what the order does not
already say; lists shown shuffled get no prior (their order says nothing). ``a`` (``model_scale``)
is then learnt with the weights, in log space at its own step size (:data:`SCALE_LR`), from
:data:`INITIAL_MODEL_SCALE`: a model whose scores do not yet predict the target stays damped towards
the order's prior instead of drowning it.

Training lists come from ``candidates/train.parquet`` (every list has its target among the
candidates). A share ``listwise_shuffle`` of them is shown in a shuffled order (seeded per list), the
rest in the pre-ranker's order: the shuffled ones can only be solved by reading the items, so the
student cannot get by on the position a candidate is shown at (the eval's shuffled-order control).

Training runs on ``transformers.Trainer`` (checkpoints, resume, schedule, logging, TensorBoard as for
every other stage); only :meth:`ListwiseTrainer.compute_loss` is ours.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import Trainer, TrainerCallback

from gr2.llm.scoring import DirectEncoder, PositionPrior, ScoreInput, direct_logprobs
from gr2.prompts.render import ItemText, PromptConfig, build_messages
from gr2.runs import atomic_write_json
from gr2.sft.config import SFTConfig

log = logging.getLogger(__name__)

__all__ = ["INITIAL_MODEL_SCALE", "ListwiseExample", "ListwiseTrainer", "encode_lists", "listwise_loss", "train_listwise"]

SCALE_LR = 0.05
"""Peak learning rate of ``log(model_scale)`` (one scalar; the weights' rate would hardly move it)."""

INITIAL_MODEL_SCALE = 0.01
"""``model_scale`` at the start of training: an untrained model's path log-probabilities differ by
several nats between candidates for reasons unrelated to the user (a damping of 0.2 still let them
undo the order's prior: ``benchmarks/listwise_probe.py``), so the student starts at the order's prior
and the scale grows (up to ~e^3 over 60 steps) only as far as the model's part earns it."""


@dataclass
class ListwiseExample:
    """One training list as the model sees it: ``inputs`` (prompt ids + the K candidates' SID paths, in
    pre-rank order), ``target`` (pre-rank index of the true next item), ``teacher`` (the pre-ranker's
    scores, pre-rank order), whether it was shown shuffled and ``offsets``: the position prior added
    to each candidate's score (pre-rank order; ``None``: no prior)."""

    example_id: str
    inputs: ScoreInput
    target: int
    teacher: list[float]
    shuffled: bool
    offsets: list[float] | None = None


def listwise_loss(scores: Sequence[torch.Tensor], targets: Sequence[int], teachers: Sequence[Sequence[float]],
                  ce_weight: float = 1.0, distill_weight: float = 0.0, temperature: float = 1.0,
                  offsets: Sequence[Sequence[float] | None] | None = None, scale: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over lists of ``ce_weight · CE + distill_weight · ListNet`` (module docstring) and its parts
    as floats: ``ce``, ``distill`` (cross-entropy of the teacher's distribution, 0 when unused) and
    ``top1`` (share of lists whose highest score is the target). The scores are multiplied by
    ``scale`` (a 0-d tensor, or ``None``) and ``offsets[i]`` (or ``None``) is added to list i's (the
    position prior). Non-finite teacher scores (a seen item padded into a short list) get no
    teacher mass."""
    if not scores:
        raise ValueError("no lists")
    ce_terms, distill_terms, hits = [], [], 0
    for s, t, teacher, o in zip(scores, targets, teachers, offsets or [None] * len(scores)):
        if scale is not None:
            s = scale * s
        if o is not None:
            s = s + torch.tensor(o, dtype=s.dtype, device=s.device)
        logp = torch.log_softmax(s, dim=-1)
        ce_terms.append(-logp[t])
        hits += int(int(torch.argmax(s.detach())) == t)
        if distill_weight:
            q = torch.tensor(teacher, dtype=s.dtype, device=s.device) / temperature
            q = torch.softmax(torch.where(torch.isfinite(q), q, torch.full_like(q, -math.inf)), dim=-1)
            distill_terms.append(-(q * logp).sum())
    ce = torch.stack(ce_terms).mean()
    loss = ce_weight * ce
    parts = {"ce": float(ce.detach()), "top1": hits / len(scores), "distill": 0.0}
    if distill_terms:
        distill = torch.stack(distill_terms).mean()
        loss = loss + distill_weight * distill
        parts["distill"] = float(distill.detach())
    return loss, parts


def encode_lists(tokenizer: Any, lists: pd.DataFrame, items: Mapping[int, ItemText], prompt: PromptConfig,
                 shuffle: float = 0.5, seed: int = 0, prior: PositionPrior | None = None) -> list[ListwiseExample]:
    """Every list of ``lists`` (columns ``example_id``, ``history``, ``candidates``, ``labels``, optional
    ``scores``) as a :class:`ListwiseExample`, rendered exactly as the eval's direct rows render a list
    (:func:`gr2.prompts.render.build_messages` with ``reasoning=False``, then
    :class:`gr2.llm.scoring.DirectEncoder`). A list is shown shuffled with probability ``shuffle``
    (seeded); with a ``prior``, every list shown in pre-rank order carries its offsets. A list whose
    labels do not have exactly one positive is an error."""
    base = dataclasses.replace(prompt, reasoning=False)
    views = {False: dataclasses.replace(base, order="prerank"), True: dataclasses.replace(base, order="shuffled")}
    encoder = DirectEncoder(tokenizer, base.sid_wrap)
    draws = np.random.default_rng(seed).random(len(lists))
    scores = lists["scores"] if "scores" in lists else [None] * len(lists)
    out = []
    for row, draw, teacher in zip(lists.itertuples(index=False), draws, scores):
        labels = [float(x) for x in row.labels]
        if sum(1 for x in labels if x > 0) != 1:
            raise ValueError(f"training list {row.example_id}: the listwise objective needs exactly one "
                             f"positive label, got {labels}")
        shuffled = bool(draw < shuffle)
        rendered = build_messages(list(row.history), list(row.candidates), views[shuffled],
                                  rng_key=str(row.example_id), items=items)
        k = len(rendered.candidate_sids)
        out.append(ListwiseExample(
            str(row.example_id), encoder.encode(rendered.messages, rendered.candidate_sids),
            int(np.argmax(labels)), [0.0] * k if teacher is None else [float(x) for x in teacher], shuffled,
            None if shuffled or prior is None else prior.offsets(rendered.presented)))
    return out


def _collate(batch: list[ListwiseExample]) -> dict[str, Any]:
    return {"lists": batch}


class _SavePrior(TrainerCallback):
    """Writes the prior with the learnt scale into every checkpoint, so a resumed run continues from it."""

    def __init__(self, trainer: ListwiseTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:  # the process that writes the checkpoint
            self.trainer.learnt_prior().save(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class ListwiseTrainer(Trainer):
    """``transformers.Trainer`` whose loss is :func:`listwise_loss` over
    :func:`~gr2.llm.scoring.direct_logprobs`; logs ``ce``, ``distill`` and ``top1`` (training R@1)
    averaged over the logging window."""

    def __init__(self, *args: Any, ce_weight: float, distill_weight: float, temperature: float,
                 pad_id: int, prior: PositionPrior | None = None, **kwargs: Any) -> None:
        super().__init__(*args, data_collator=_collate, **kwargs)
        self.weights = dict(ce_weight=ce_weight, distill_weight=distill_weight, temperature=temperature)
        self.pad_id = pad_id
        self.prior = prior
        # log(model_scale), trained beside the model's weights when there is a prior
        self.log_scale = None if prior is None else torch.nn.Parameter(torch.tensor(math.log(prior.model_scale)))
        self._window: dict[str, list[float]] = {}
        if prior is not None:
            self.add_callback(_SavePrior(self))

    def learnt_prior(self) -> PositionPrior | None:
        """The prior with the ``model_scale`` learnt so far (``None`` without a prior)."""
        if self.prior is None:
            return None
        return dataclasses.replace(self.prior, model_scale=float(self.log_scale.detach().exp()))

    def create_optimizer(self) -> Any:
        optimizer = super().create_optimizer()
        if self.log_scale is not None and not any(self.log_scale is p for g in optimizer.param_groups
                                                  for p in g["params"]):
            optimizer.add_param_group({"params": [self.log_scale], "lr": SCALE_LR, "weight_decay": 0.0})
        return optimizer

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.log_scale is not None and self.log_scale.grad is not None and self.accelerator.num_processes > 1:
            # the scale is not part of the (DDP) model: average its gradient over the processes as DDP does
            # the model's, so every process takes the same step
            grad = self.accelerator.reduce(self.log_scale.grad.to(self.accelerator.device), reduction="mean")
            self.log_scale.grad = grad.to(self.log_scale.device)
        return loss

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        lists: list[ListwiseExample] = inputs["lists"]
        scores = direct_logprobs(model, [x.inputs for x in lists], None, self.pad_id)
        # the scalar lives on the CPU; .to() keeps it on the graph wherever the scores are
        scale = None if self.log_scale is None else self.log_scale.exp().to(scores[0].device)
        loss, parts = listwise_loss(scores, [x.target for x in lists], [x.teacher for x in lists], **self.weights,
                                    offsets=[x.offsets for x in lists], scale=scale)
        if scale is not None:
            parts["model_scale"] = float(scale.detach())
        for key, value in parts.items():
            self._window.setdefault(key, []).append(value)
        return (loss, {"scores": scores}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: add the window's means of the loss parts
            means = {k: float(np.mean(v)) for k, v in sorted(self._window.items()) if v}
            if means and self.accelerator.num_processes > 1:  # every process logs: mean of their equal shares
                reduced = self.accelerator.reduce(torch.tensor(list(means.values()), device=self.accelerator.device),
                                                  reduction="mean")
                means = dict(zip(means, reduced.tolist()))
            logs.update({k: round(v, 4) for k, v in means.items()})
            self._window = {}
        super().log(logs, *args, **kwargs)


def train_listwise(model: Any, tokenizer: Any, examples: Sequence[ListwiseExample], cfg: SFTConfig, out_dir: Path,
                   meta: Mapping[str, Any] | None = None, callbacks: Sequence[Any] = (),
                   prior: PositionPrior | None = None) -> dict[str, Any]:
    """Listwise training of ``model`` on ``examples`` (:func:`encode_lists`), usable without a run
    directory. Writes under ``out_dir`` like the trace SFT does: ``checkpoints/`` (a re-call resumes
    from the latest), ``tb/``, ``model/`` (LoRA merged; plus the ``prior`` the examples were encoded
    with and its learnt scale, which every later scoring of the model adds) and ``metrics.json``;
    returns the metrics."""
    from gr2.training.dist import is_main, refuse_sharded
    from gr2.training.loop import (
        epoch_steps,
        latest_checkpoint,
        tensorboard,
        train_and_save,
    )
    from gr2.training.setup import lora_config, start_training

    if not examples:
        raise ValueError("no listwise training lists")
    refuse_sharded("the listwise objective (its own forward pass and the position prior's scale)")
    out_dir = Path(out_dir)
    device = start_training(cfg, model)
    if cfg.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg))
    args = listwise_args(cfg, out_dir / "checkpoints", epoch_steps(cfg, len(examples)), device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tb_callback, writer = tensorboard(out_dir / "tb")
    trainer = ListwiseTrainer(model=model, args=args, train_dataset=list(examples), processing_class=tokenizer,
                              callbacks=[tb_callback, *callbacks],
                              ce_weight=cfg.listwise_ce, distill_weight=cfg.listwise_distill,
                              temperature=cfg.listwise_temperature, pad_id=int(pad or 0), prior=prior)
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    resumed = PositionPrior.load(ckpt) if prior is not None and ckpt is not None else None
    if resumed is not None:
        trainer.log_scale.data.fill_(math.log(resumed.model_scale))
    _, result, seconds = train_and_save(trainer, ckpt, cfg.lora, tokenizer, out_dir / "model")
    prior = trainer.learnt_prior()
    if prior is not None and is_main():
        prior.save(out_dir / "model")
    writer.close()
    history = [h for h in trainer.state.log_history if "loss" in h]
    first, last = (history[0], history[-1]) if history else ({}, {})
    metrics: dict[str, Any] = {
        **(meta or {}),
        "objective": "listwise",
        "device": device,
        "weights": {"ce": cfg.listwise_ce, "distill": cfg.listwise_distill, "temperature": cfg.listwise_temperature},
        "position_prior": None if prior is None else {"log_prior": [round(x, 4) for x in prior.log_prior],
                                                      "model_scale": round(prior.model_scale, 6)},
        "data": {"lists": len(examples), "shuffled": sum(x.shuffled for x in examples),
                 "lists_seen": int(trainer.state.global_step) * cfg.batch_size * cfg.grad_accum},
        "steps": int(trainer.state.global_step),
        **{f"{k}_{end}": h.get(k) for k in ("loss", "ce", "distill", "top1", "model_scale") for end, h in
           (("start", first), ("end", last))},
        "train_loss_mean": round(float(result.training_loss), 4),
        "resumed_from": ckpt.name if ckpt is not None else None,
        "train_seconds": round(seconds, 2),
        "seconds": round(seconds, 2),
        "log": history,
    }
    if is_main():
        atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def listwise_args(cfg: SFTConfig, output_dir: Path, steps: int, device: str) -> Any:
    """``TrainingArguments`` of the listwise objective: the schedule of ``cfg`` and the CPU-safe
    defaults every stage shares (:func:`gr2.training.loop.trainer_defaults`); the batch holds
    Python objects, so no column is removed and the dataloader does not pin memory."""
    from transformers import TrainingArguments

    from gr2.training.loop import device_batch, trainer_defaults

    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(round(cfg.lr_warmup_ratio * steps)),
        per_device_train_batch_size=device_batch(cfg),
        gradient_accumulation_steps=cfg.grad_accum,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        **trainer_defaults(cfg, device),
    )
