"""DAPO on top of TRL 1.16's ``GRPOTrainer``: dynamic sampling, text prompts tokenised as they are,
optionally constrained rollouts, and the ``GRPOConfig`` every DAPO stage trains with
(:func:`grpo_args`). Shared by the re-ranking ``rl`` stage and the ``rating`` stage, which bring
their own reward functions (:class:`gr2.rl.dapo.RerankReward`, :class:`gr2.rating.rewards.RatingReward`).

TRL's ``GRPOTrainer`` already implements most of DAPO (docs/resources.md): token-level loss
normalisation (``loss_type="dapo"``), the asymmetric clip (``epsilon``/``epsilon_high``) and no KL
(``beta=0``).

**Prompts given as text** (the chat template already applied, as the ``rl`` stage does) are
tokenised without adding special tokens, exactly like ``gr2.sft`` and ``gr2.llm.generate`` do, so
the policy sees the same tokens in SFT, RL and evaluation.

**Dynamic sampling** (:class:`DAPOTrainer`). TRL builds a batch like this: the dataloader yields a
*generation batch* (``per_device_train_batch_size × steps_per_generation`` rows, each prompt
repeated ``G = num_generations`` times in consecutive rows); ``_prepare_inputs`` calls
``_generate_and_score_completions`` on it once per ``steps_per_generation × num_iterations``
micro-steps, which generates, scores (``_calculate_rewards``, gathered over processes), computes
group-relative advantages and returns padded tensors; ``_prepare_inputs`` then shuffles the rows
and buffers ``steps_per_generation`` slices, one per micro-step. TRL only *logs* the share of
zero-variance groups (``frac_reward_zero_std``).

The least invasive correct place is therefore ``_generate_and_score_completions`` itself, wrapped
(not copied):

1. run TRL's method on the dataloader's batch; ``_calculate_rewards`` is wrapped only to remember
   the total reward per row (the same weighted sum TRL uses);
2. a group is *informative* when its finite rewards are not all equal (``max - min > 1e-6``); its
   advantages are kept exactly as TRL computed them (per group, so merging groups from different
   rounds is exact — hence ``scale_rewards`` must be ``group`` or ``none``);
3. zero-variance groups are dropped; while fewer informative groups than the batch had are kept,
   a *resample round* draws a fresh generation batch of the same size (prompts drawn uniformly
   without replacement from the whole training set, seeded by ``(seed, global_step, micro-step,
   round)`` so a resumed run draws the same prompts) and runs TRL's method on it; informative
   groups are added in order until the batch is full — extra ones are discarded, as in DAPO's
   reference implementation, which also samples whole batches per round;
4. after ``max_resample_rounds`` rounds without filling the batch, the step **trains on the
   informative groups it has** (a smaller batch; the token-level normaliser
   ``num_items_in_batch`` is recomputed for the kept rows) and logs it (``dapo/filled = 0``).
   Rows are concatenated with prompts re-padded on the left and completions on the right. When
   the kept rows do not split evenly into the ``steps_per_generation`` micro-batches (or there
   are none at all), the batch is topped up with *inert* rows — copies of dropped rows with
   advantage 0 and an empty loss mask — so every micro-step still runs (and every process takes
   part in the backward pass) but nothing is learnt from them.

Logged every step next to TRL's metrics (``reward``, ``completions/mean_length``, …, averaged
over all rounds, which all have the same size): ``dapo/zero_std_frac`` (share of zero-variance
groups in the dataloader's batch, before filtering), ``dapo/resample_rounds``, ``dapo/kept_frac``
(informative groups trained on / groups per batch), ``dapo/filled`` and ``dapo/kept_reward``
(mean reward of the rows trained on; absent when none is). With ``dynamic_sampling=False`` only
the first two are logged and the batch is left as TRL built it.

Groups are identified in the gathered (global) reward vector, so every process takes the same
decisions and runs the same number of rounds.

**Seeded rollouts** (``seeded_rollouts=True``; the ``seeded_rollouts`` setting). transformers samples
a process's rows from that process's generator, so the same global batch split over two processes
samples other completions. With seeded rollouts every row is sampled by a
:class:`gr2.llm.seeded.SeededSampler` (the last logits processor, after the constraint) from a stream
keyed by ``(seed, global step, micro-step, round)`` and the row's index in the global generation
batch: a run launched as N processes samples the same rollouts, and so trains like one process
(tests/core/test_multiprocess.py, 2 processes).

**Constrained rollouts** (``constraint=``, a :class:`gr2.llm.constrained.RankingConstraint`; the
``rl.constrained`` setting). TRL generates with ``unwrapped_model.generate(**inputs,
generation_config=...)`` in ``_generate_single_turn`` and offers no way to pass a logits processor,
so that method is wrapped: for the duration of the call the unwrapped model's ``generate`` gets a
:class:`gr2.llm.constrained.RankingLogitsProcessor` bound as ``logits_processor`` (and is restored
after). The processor must know each row's candidates: generation rows are the generation batch's
rows in order (each prompt ``G`` times), so every round of ``_generate_and_score_completions``
records its rows' ``candidate_sids`` before TRL tokenises them — the same column the reward reads,
so the constraint and the reward always agree on the candidates. A round whose generation never ran
through the processor raises (TRL's generation path changed). vLLM and transformers' continuous
batching generate elsewhere and are refused.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from trl import GRPOTrainer

from gr2.llm.constrained import RankingConstraint
from gr2.llm.seeded import SeededSampler

if TYPE_CHECKING:
    from gr2.training.config import DAPOFields

__all__ = ["DAPOTrainer", "DynamicSample", "dynamic_sample", "grpo_args", "informative_groups"]

log = logging.getLogger(__name__)

#: Rewards of one group closer than this count as equal.
ZERO_STD_ATOL = 1e-6


# --------------------------------------------------------------------------- arguments
def grpo_args(cfg: DAPOFields, output_dir: Path, device: str) -> Any:
    """TRL's ``GRPOConfig`` for ``cfg``, CPU-safe (docs/resources.md: bf16 only on a CUDA device that
    supports it, activation checkpointing off, ``use_cpu`` without CUDA)."""
    from trl import GRPOConfig

    from gr2.training.loop import device_batch, trainer_defaults

    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        raise RuntimeError("use_vllm is set but vLLM is not installed: `pip install vllm` (GPU only), "
                           "or set use_vllm=false to generate with transformers")
    vllm = {"use_vllm": True, "vllm_mode": cfg.vllm_mode} if cfg.use_vllm else {}
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=cfg.warmup_steps,
        # completions per micro-step over all processes, split between them (gr2.training.dist)
        per_device_train_batch_size=device_batch(cfg, cfg.batch_size * cfg.num_generations // cfg.grad_accum,
                                                 "batch_size * num_generations / grad_accum"),
        gradient_accumulation_steps=cfg.grad_accum,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        **rollout_cache(cfg.rollout_cache, device),
        **vllm,
        **trainer_defaults(cfg, device),
    )


def rollout_cache(cache: str, device: str) -> dict[str, Any]:
    """``GRPOConfig`` arguments for the rollouts' KV cache (the ``rollout_cache`` setting): ``static``
    sets TRL's ``cache_implementation``, and on CUDA lets transformers compile the decoding step (TRL
    turns that off by default: ``disable_compile``); ``dynamic`` changes nothing."""
    if cache == "dynamic":
        return {}
    out: dict[str, Any] = {"cache_implementation": "static"}
    if device.startswith("cuda"):
        out["generation_kwargs"] = {"disable_compile": False}
    return out


def train_dapo(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], cfg: DAPOFields, out_dir: Path,
               reward: Any, callbacks: Sequence[Any] = (), constraint: RankingConstraint | None = None,
               before_train: Callable[[Path | None], None] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """DAPO of ``model`` on ``rows`` (dicts with a ``prompt`` text and the columns ``reward`` reads) with
    ``reward`` (a TRL ``reward_funcs`` callable): set-up (:func:`gr2.training.setup.start_training`),
    TensorBoard under ``out_dir/tb``, checkpoints under ``out_dir/checkpoints`` (resumed from the
    latest), the trained model saved to ``out_dir/model`` (LoRA merged). ``callbacks`` join
    TensorBoard's; ``constraint``: rollouts sampled through it; ``before_train(checkpoint)`` runs once
    the checkpoint to resume from (or ``None``) is known. Returns ``(model, trainer, info)``; info has
    ``resumed_from``, ``global_step``, ``train_loss``, ``seconds`` and ``device``. Shared by the
    ``rl`` and ``rating`` stages."""
    from datasets import Dataset

    from gr2.training.loop import (
        latest_checkpoint,
        tensorboard,
        train_and_save,
        train_info,
    )
    from gr2.training.setup import lora_config, start_training

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = start_training(cfg, model)
    tb_callback, writer = tensorboard(out_dir / "tb")
    trainer = DAPOTrainer(
        model=model, reward_funcs=[reward], args=grpo_args(cfg, out_dir / "checkpoints", device),
        train_dataset=Dataset.from_list([dict(r) for r in rows]), processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.lora else None, callbacks=[tb_callback, *callbacks],
        dynamic_sampling=cfg.dynamic_sampling, max_resample_rounds=cfg.max_resample_rounds, constraint=constraint,
        seeded_rollouts=cfg.seeded_rollouts,
    )
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    if ckpt is not None:
        log.info("DAPO: resuming from %s", ckpt)
    if before_train is not None:
        before_train(ckpt)
    model, result, seconds = train_and_save(trainer, ckpt, cfg.lora, tokenizer, out_dir / "model")
    writer.close()
    return model, trainer, {**train_info(trainer, ckpt, result, seconds, digits=6), "device": device}


# --------------------------------------------------------------------------- dynamic sampling (pure)
def informative_groups(rewards: Sequence[float], group_size: int, atol: float = ZERO_STD_ATOL) -> list[bool]:
    """Per group of ``group_size`` consecutive rewards: ``True`` iff its finite rewards are not all
    equal (``max - min > atol``; fewer than two finite rewards: ``False``)."""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    out = []
    for g in range(len(rewards) // group_size):
        vals = [float(r) for r in rewards[g * group_size:(g + 1) * group_size] if math.isfinite(r)]
        out.append(len(vals) >= 2 and max(vals) - min(vals) > atol)
    return out


@dataclass
class DynamicSample:
    """Which groups of which generation round make up the batch."""

    picks: list[list[int]]
    """Per round (0 = the dataloader's batch, then each resample round): indices of the groups of
    that round kept, in order."""
    target: int
    """Groups per batch (the dataloader's batch size in groups)."""
    zero_std_frac: float
    """Share of zero-variance groups in round 0, before filtering."""

    @property
    def rounds(self) -> int:
        """Resample rounds run."""
        return len(self.picks) - 1

    @property
    def kept(self) -> int:
        return sum(len(p) for p in self.picks)

    @property
    def filled(self) -> bool:
        return self.kept == self.target


def dynamic_sample(first: Sequence[float], draw: Callable[[int], Sequence[float]], group_size: int,
                   max_rounds: int, atol: float = ZERO_STD_ATOL) -> DynamicSample:
    """DAPO's dynamic sampling over rewards only: keep the informative groups of ``first`` and call
    ``draw(round)`` (1-based; it generates a new batch and returns its rewards) until as many
    informative groups as ``first`` has groups are kept, or ``max_rounds`` rounds were run."""
    mask = informative_groups(first, group_size, atol)
    target = len(mask)
    zero = 1.0 - sum(mask) / target if target else 0.0
    picks: list[list[int]] = []
    kept = 0
    rnd = 0
    while True:
        take = [g for g, ok in enumerate(mask) if ok][: target - kept]
        picks.append(take)
        kept += len(take)
        if kept >= target or rnd >= max_rounds:
            break
        rnd += 1
        mask = informative_groups(draw(rnd), group_size, atol)
    return DynamicSample(picks=picks, target=target, zero_std_frac=zero)


# --------------------------------------------------------------------------- trainer
# Tensors of a TRL generation batch and how to pad them when rows of several rounds are merged.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")
_RIGHT_PADDED = ("completion_ids", "completion_mask", "old_per_token_logps", "sampling_per_token_logps",
                 "ref_per_token_logps", "importance_sampling_ratio", "tool_mask")
_PER_ROW = ("advantages",)


class DAPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` + DAPO's dynamic sampling (see the module docstring for exactly what is
    dropped and refilled) + optionally constrained and seeded rollouts. Extra keyword arguments:
    ``dynamic_sampling`` (default on), ``max_resample_rounds``, ``constraint`` (``None``: free
    sampling; the dataset then needs no ``candidate_sids`` column) and ``seeded_rollouts``."""

    def __init__(self, *args: Any, dynamic_sampling: bool = True, max_resample_rounds: int = 3,
                 constraint: RankingConstraint | None = None, seeded_rollouts: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_resample_rounds < 0:
            raise ValueError("max_resample_rounds must be >= 0")
        self.seeded_rollouts = seeded_rollouts
        self._round = 0
        if seeded_rollouts and (self.use_vllm or self.use_transformers_continuous_batching):
            raise ValueError("seeded rollouts sample through transformers' generate: not with vLLM or "
                             "continuous batching (set seeded_rollouts=false)")
        self.dynamic_sampling = dynamic_sampling
        self.max_resample_rounds = max_resample_rounds
        self._round_rewards: list[float] = []
        self.constraint = constraint
        self._round_candidates: list[list[str]] = []
        if constraint is not None:
            if self.use_vllm or self.use_transformers_continuous_batching:
                raise ValueError("constrained rollouts run through transformers' generate: not with vLLM or "
                                 "continuous batching (set rl.constrained=false)")
            if any(t in self.eos_token_ids for t in constraint.end[:-1]):
                raise ValueError("the constrained answer's end of turn holds an EOS token before its last token: "
                                 "generation would stop inside it")
        if dynamic_sampling:
            if self.scale_rewards not in ("group", "none") or self.multi_objective_aggregation != "sum_then_normalize":
                raise ValueError("dynamic sampling merges groups of several rounds: it needs scale_rewards "
                                 "'group' or 'none' and multi_objective_aggregation 'sum_then_normalize'")
            if not hasattr(self.train_dataset, "__getitem__"):
                raise ValueError("dynamic sampling draws refill prompts by index: use a map-style Dataset")

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], Any, dict[str, Any]]:
        """Text prompts are tokenised as they are: their chat template already holds the special
        tokens the model expects (TRL would add a BOS again), as in ``gr2.sft`` and
        ``gr2.llm.generate``. Conversational prompts go to TRL unchanged."""
        if prompts and isinstance(prompts[0], str):
            return self.processing_class(text=prompts, add_special_tokens=False)["input_ids"], None, {}
        return super()._tokenize_prompts(prompts)

    def _calculate_rewards(self, inputs: list[dict[str, Any]], prompts: list, completions: list,
                           completion_ids_list: list) -> torch.Tensor:
        per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        total = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(per_func).all(dim=1)] = torch.nan  # as TRL: unscorable rows stay NaN
        self._round_rewards = total.detach().float().cpu().tolist()
        return per_func

    def _generate_single_turn(self, prompt_ids: list, *args: Any, **kwargs: Any) -> Any:
        """TRL's generation, through the ranking constraint of this round's rows when one is set and
        sampled by a :class:`~gr2.llm.seeded.SeededSampler` with ``seeded_rollouts``."""
        model = self.accelerator.unwrap_model(self.model_wrapped)
        processors: list[Any] = []
        if self.constraint is not None:
            if len(prompt_ids) != len(self._round_candidates):
                raise RuntimeError(f"{len(prompt_ids)} prompts to generate for {len(self._round_candidates)} "
                                   "candidate lists: the rows of a generation round are not the batch's rows")
            processors.append(self.constraint.processor(self._round_candidates, self.generation_config.max_new_tokens))
        if self.seeded_rollouts:
            processors.append(self._seeded_sampler(model, len(prompt_ids)))
        if not processors:
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)
        with _bound_logits_processors(model, processors):
            out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if any(p.steps == 0 for p in processors):
            raise RuntimeError("rollouts: TRL generated without calling gr2's logits processors "
                               "(its generation path changed)")
        return out

    def _seeded_sampler(self, model: Any, rows: int) -> SeededSampler:
        """The sampler of this round's ``rows`` (this process's slice of the global generation batch),
        keyed by ``(seed, step, micro-step, round)`` like the refill prompts. It applies the warpers of
        the configuration ``generate`` will use: TRL's, completed from the model's defaults as
        transformers completes it."""
        cfg = copy.deepcopy(self.generation_config)
        cfg.update(**model.generation_config.to_dict(), defaults_only=True)
        micro = self._step % self.args.gradient_accumulation_steps
        key = (self.args.seed, self.state.global_step, micro, self._round)
        return SeededSampler(cfg, key, first_row=self.accelerator.process_index * rows,
                             total_rows=rows * self.accelerator.num_processes)

    def _generate_round(self, inputs: list[dict[str, Any]], rnd: int = 0) -> dict[str, Any]:
        """TRL's generate-and-score on one generation batch (``rnd``: 0 = the dataloader's, then the
        resample rounds); its rows' candidates are kept for the constraint (the rows are generated
        in this order)."""
        if self.constraint is not None:
            self._round_candidates = [list(x["candidate_sids"]) for x in inputs]
        self._round = rnd
        return super()._generate_and_score_completions(inputs)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        generate = self._generate_round
        if not self.model.training:
            return generate(inputs)
        first = generate(inputs)
        group = self.num_generations
        if not self.dynamic_sampling:
            mask = informative_groups(self._round_rewards, group)
            self._log_dapo(zero_std_frac=1.0 - sum(mask) / len(mask), resample_rounds=0.0)
            return first
        outputs = [first]
        rewards = [self._round_rewards]

        def draw(rnd: int) -> list[float]:
            outputs.append(generate(self._refill_inputs(len(inputs), rnd), rnd))
            rewards.append(self._round_rewards)
            return self._round_rewards

        sample = dynamic_sample(rewards[0], draw, group, self.max_resample_rounds)
        merged, kept_rewards = self._merge(outputs, rewards, sample.picks, len(inputs))
        if not sample.filled:
            log.info("dapo: step %d trains on %d/%d informative groups after %d resample rounds",
                     self.state.global_step + 1, sample.kept, sample.target, sample.rounds)
        self._log_dapo(zero_std_frac=sample.zero_std_frac, resample_rounds=float(sample.rounds),
                       kept_frac=sample.kept / sample.target, filled=float(sample.filled))
        if kept_rewards:
            self._log_dapo(kept_reward=float(np.nanmean(kept_rewards)))
        return merged

    def _log_dapo(self, **values: float) -> None:
        for name, value in values.items():
            self._metrics["train"][f"dapo/{name}"].append(value)

    def _refill_inputs(self, n_local: int, rnd: int) -> list[dict[str, Any]]:
        """A new generation batch laid out like the dataloader's (each prompt ``G`` times in a row,
        this process's contiguous slice of the global batch), prompts drawn without replacement."""
        ds = self.train_dataset
        n_prompts = n_local * self.accelerator.num_processes // self.num_generations
        micro = self._step % self.args.gradient_accumulation_steps
        rng = np.random.default_rng([self.args.seed, self.state.global_step, micro, rnd])
        idx = rng.choice(len(ds), size=n_prompts, replace=n_prompts > len(ds))
        rows = [ds[int(i)] for i in idx for _ in range(self.num_generations)]
        start = self.accelerator.process_index * n_local
        return rows[start:start + n_local]

    def _merge(self, outputs: list[dict[str, Any]], rewards: list[list[float]], picks: list[list[int]],
               n_local: int) -> tuple[dict[str, Any], list[float]]:
        """Concatenate this process's rows of the kept groups of every round; top up with inert rows
        so the rows split evenly (at least one each) into the ``steps_per_generation`` micro-batches."""
        group = self.num_generations
        start = self.accelerator.process_index * n_local
        parts: list[dict[str, Any]] = []
        kept_rewards: list[float] = []
        for out, rew, pick in zip(outputs, rewards, picks):
            rows = [r for g in pick for r in range(g * group, (g + 1) * group) if start <= r < start + n_local]
            kept_rewards.extend(rew[r] for g in pick for r in range(g * group, (g + 1) * group))
            if rows:
                parts.append(_select(out, torch.tensor([r - start for r in rows])))
        n = sum(len(p["advantages"]) for p in parts)
        steps = self.args.steps_per_generation
        inert = max(steps, math.ceil(n / steps) * steps) - n
        if inert:
            filler = _select(outputs[0], torch.arange(inert) % n_local)
            filler["advantages"] = torch.zeros_like(filler["advantages"])
            filler["completion_mask"] = torch.zeros_like(filler["completion_mask"])
            parts.append(filler)
        merged: dict[str, Any] = {}
        pad_id = self._tokenizer.pad_token_id
        for key, value in outputs[0].items():
            if key == "num_items_in_batch":
                continue  # recomputed below, in place
            merged[key] = _concat(key, [p[key] for p in parts], pad_id)
        loss_mask = merged["completion_mask"]
        if "tool_mask" in merged:
            loss_mask = loss_mask * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        merged = {k: merged[k] for k in outputs[0]}  # TRL's key order: _prepare_inputs counts rows on the first
        return merged, kept_rewards


@contextmanager
def _bound_logits_processors(model: Any, processors: Sequence[Any]) -> Iterator[None]:
    """``model.generate`` called with ``logits_processor=processors`` (in that order, before
    transformers' sampling warpers) inside the block (TRL's ``_generate_single_turn`` passes no
    processor of its own); an instance-level ``generate`` (e.g. a ``custom_generate``) is restored
    afterwards."""
    from transformers import LogitsProcessorList

    own = model.__dict__.get("generate")
    generate = model.generate

    def bound(*args: Any, **kwargs: Any) -> Any:
        return generate(*args, logits_processor=LogitsProcessorList(processors), **kwargs)

    model.generate = bound
    try:
        yield
    finally:
        if own is None:
            del model.generate
        else:
            model.generate = own


def _select(batch: Mapping[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "num_items_in_batch":
            continue
        if key not in _LEFT_PADDED + _RIGHT_PADDED + _PER_ROW or not isinstance(value, torch.Tensor):
            raise NotImplementedError(f"dynamic sampling handles text-only batches; cannot merge {key!r}")
        out[key] = value[rows.to(value.device)]
    return out


def _concat(key: str, tensors: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    if key in _PER_ROW:
        return torch.cat(tensors)
    width = max(t.shape[1] for t in tensors)
    value = pad_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
    left = key in _LEFT_PADDED
    return torch.cat([F.pad(t, (width - t.shape[1], 0) if left else (0, width - t.shape[1]), value=value)
                      for t in tensors])
