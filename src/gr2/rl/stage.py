"""The ``rl`` stage (docs/method.md §7): DAPO on re-ranking prompts with the conditional reward.

Reads ``candidates/{split}.parquet`` (for each ``split``), ``data/items.parquet``,
``sid/sids.parquet`` and the starting policy (``sft/model``, ``midtrain/model`` or any model
``gr2.llm.registry.load`` resolves; see ``gr2.runs.model_source``); writes under ``rl/``:

* ``model/`` — the trained policy + tokenizer (``save_pretrained``, written atomically; LoRA merged);
* ``log.jsonl`` — one JSON object per logging step: ``step``, TRL's metrics (``loss``, ``reward``,
  ``reward_std``, ``frac_reward_zero_std``, ``completions/mean_length``, ``clip_ratio/…``,
  ``learning_rate``, …) and ours (``rl/valid_rate``, ``rl/format_rate``, ``rl/copy_shown_rate``,
  ``rl/copy_prerank_rate``, ``rl/task_reward``, ``rl/overlong_penalty`` from
  :class:`gr2.rl.dapo.RerankReward`; ``dapo/zero_std_frac``, ``dapo/resample_rounds``,
  ``dapo/kept_frac``, ``dapo/filled``, ``dapo/kept_reward`` from :class:`gr2.training.dapo.DAPOTrainer`);
* ``tb/`` — the same scalars for TensorBoard;
* ``checkpoints/checkpoint-N`` — every ``save_steps``; a re-run resumes from the latest one (log
  lines after it are dropped first), deleted at the end unless ``keep_checkpoints``;
* ``metrics.json`` — what was trained (policy, lists, reward, settings, whether rollouts were
  constrained) and a summary of the log.

Under ``accelerate launch`` only the main process writes these (:mod:`gr2.training.dist`); each
process generates and trains on its share of the step's ``batch_size`` prompts.

With ``rl.constrained`` (on by default for the reasoning-free variant) rollouts are sampled through
:class:`gr2.llm.constrained.RankingConstraint`: every answer is a ranking of its prompt's own
candidates (``rl/valid_rate`` 1.0), so the reward ranks orders instead of punishing malformed text.

:func:`train_rl` is the same training without a run directory (a model, its tokenizer, prompt rows).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gr2.prompts.chat import apply_chat_template
from gr2.prompts.render import (
    ItemText,
    PromptConfig,
    build_messages,
)
from gr2.rl.config import RLConfig
from gr2.runs import RunDir, atomic_path, atomic_write_json, read_jsonl

if TYPE_CHECKING:
    from gr2.llm.constrained import RankingConstraint

log = logging.getLogger(__name__)

OUTPUTS = ("rl/model/config.json", "rl/metrics.json", "rl/log.jsonl")
SINGLE_POSITIVE = ("conditional", "naive")
#: Log fields summarised in ``metrics.json``.
SUMMARY_KEYS = ("reward", "rl/valid_rate", "rl/format_rate", "rl/copy_shown_rate", "rl/copy_prerank_rate",
                "dapo/zero_std_frac", "dapo/resample_rounds", "dapo/kept_frac", "completions/mean_length")


# --------------------------------------------------------------------------- data → prompt rows
def select_lists(lists: pd.DataFrame, cfg: RLConfig) -> pd.DataFrame:
    """The lists trained on: those with a positive (others have one reward for every order), a
    seeded sample of ``n_examples``. Single-positive rewards refuse slates with several positives."""
    n_pos = lists["labels"].map(lambda ls: sum(1 for x in ls if x > 0))
    if cfg.reward in SINGLE_POSITIVE and (n_pos > 1).any():
        raise ValueError(f"rl.reward={cfg.reward!r} needs one positive per list; {int((n_pos > 1).sum())} "
                         "lists have several: use reward 'auc' or 'ndcg'")
    kept = lists[n_pos > 0]
    if cfg.n_examples is not None and len(kept) > cfg.n_examples:
        kept = kept.sample(n=cfg.n_examples, random_state=cfg.seed)
    return kept.reset_index(drop=True)


def prompt_rows(lists: pd.DataFrame, items: Mapping[int, ItemText], tokenizer: Any,
                prompt_cfg: PromptConfig) -> list[dict[str, Any]]:
    """One training row per list: the prompt text (the tokenizer's chat template, ChatML when it has
    none) and the columns the reward reads (``candidate_sids``, ``presented``, ``candidate_labels``). The
    shuffled presentation is keyed by ``example_id``, so it is fixed per list."""
    rows = []
    for ex_id, hist, cands, labels in zip(lists["example_id"], lists["history"], lists["candidates"],
                                          lists["labels"]):
        rp = build_messages(list(hist), list(cands), prompt_cfg, rng_key=str(ex_id), items=items)
        rows.append({"prompt": apply_chat_template(tokenizer, rp.messages, fallback="chatml"),
                     "candidate_sids": rp.candidate_sids, "presented": rp.presented,
                     "candidate_labels": [int(x) for x in labels], "example_id": str(ex_id)})
    return rows


# --------------------------------------------------------------------------- training
def rollout_constraint(tokenizer: Any, cfg: RLConfig) -> RankingConstraint | None:
    """The ranking constraint rollouts are sampled through (``None``: free sampling). Answers end
    as SFT taught them to: the chat template's end of turn (:func:`gr2.prompts.chat.end_of_turn`)."""
    if not cfg.constrained_rollouts:
        return None
    from gr2.llm.constrained import RankingConstraint
    from gr2.prompts.chat import end_of_turn

    return RankingConstraint(tokenizer, reasoning=cfg.reasoning, sid_wrap=cfg.prompt.sid_wrap,
                             end_text=end_of_turn(tokenizer))


def _jsonl_logger(path: Path) -> Any:
    from transformers import TrainerCallback

    class JsonlLogger(TrainerCallback):
        """Appends every training-step log (the ones carrying ``reward``) to ``path``."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' API
            if state.is_world_process_zero and logs and "reward" in logs:
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": int(state.global_step), **logs}, default=float) + "\n")

    return JsonlLogger()


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (written by an interrupted run past its last checkpoint)."""
    lines = [x for x in read_jsonl(path) if x["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


def train_rl(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]], cfg: RLConfig,
             out_dir: Path) -> tuple[Any, dict[str, Any]]:
    """DAPO on ``rows`` (dicts with ``prompt`` text, ``candidate_sids``, ``presented``,
    ``candidate_labels``; see :func:`prompt_rows`). Writes ``out_dir/{log.jsonl, tb/, checkpoints/, model/}`` and resumes
    from the latest checkpoint in ``out_dir/checkpoints``. Returns ``(trained model, info)``; info has
    ``resumed_from``, ``global_step``, ``train_loss``, ``seconds``."""
    from gr2.rl.dapo import RerankReward
    from gr2.training.dapo import train_dapo
    from gr2.training.dist import is_main

    log_path = Path(out_dir) / "log.jsonl"
    reward = RerankReward(cfg.reward, alpha=cfg.alpha, invalid=cfg.invalid_reward, reasoning=cfg.reasoning,
                          max_completion_length=cfg.max_completion_length, overlong_buffer=cfg.overlong_buffer,
                          reasoning_format=cfg.prompt_config.answer_reasoning_format)

    def keep_log_to(ckpt: Path | None) -> None:
        if not is_main():
            return
        if ckpt is not None:
            _truncate_log(log_path, json.loads((ckpt / "trainer_state.json").read_text())["global_step"])
        elif log_path.exists():
            log_path.unlink()  # a fresh start: an old log would be misread as this run's

    model, _, info = train_dapo(model, tokenizer, rows, cfg, out_dir, reward, [_jsonl_logger(log_path)],
                                rollout_constraint(tokenizer, cfg), keep_log_to)
    return model, info


def summarize_log(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per key of :data:`SUMMARY_KEYS`: the first and last logged value and the mean over the run."""
    out: dict[str, Any] = {"lines": len(lines)}
    for key in SUMMARY_KEYS:
        vals = [float(x[key]) for x in lines if x.get(key) is not None]
        if vals:
            out[key] = {"first": round(vals[0], 4), "last": round(vals[-1], 4),
                        "mean": round(sum(vals) / len(vals), 4)}
    out["steps_not_filled"] = sum(1 for x in lines if x.get("dapo/filled") == 0)
    return out


# --------------------------------------------------------------------------- stage
def run_rl(run: RunDir, cfg: RLConfig) -> dict:
    """Build prompts for the training lists, train with DAPO, save ``rl/model`` and the logs.
    Resumes from checkpoints left by an interrupted run of the same config."""
    from gr2.llm.registry import load
    from gr2.prompts.items import load_item_texts
    from gr2.runs import model_source

    t0 = time.perf_counter()
    out = run.stage_dir("rl")
    lists = pd.concat([pd.read_parquet(run.file("candidates", f"{s}.parquet")) for s in cfg.split],
                      ignore_index=True)
    total = len(lists)
    lists = select_lists(lists, cfg)
    if lists.empty:
        raise ValueError(f"rl: no list with a positive in candidates/{cfg.split}")
    source = model_source(run, cfg.init)
    model, tok = load(source)
    rows = prompt_rows(lists, load_item_texts(run), tok, cfg.prompt_config)
    log.info("rl: %d lists (of %d) from %s, policy %s", len(rows), total, cfg.split, source)
    _, info = train_rl(model, tok, rows, cfg, out)
    from gr2.llm.scoring import PositionPrior
    from gr2.training.dist import is_main

    if not is_main():
        return {}  # the main process writes the metrics and removes the checkpoints

    prior = PositionPrior.load(source)
    if prior is not None:  # direct scoring of the policy adds its initial model's position prior
        prior.save(out / "model")
    lines = read_jsonl(out / "log.jsonl")
    seconds = time.perf_counter() - t0
    metrics = {
        "policy": source,
        "lists": len(rows),
        "lists_available": total,
        "splits": list(cfg.split),
        "config": dataclasses.asdict(cfg),
        "constrained_rollouts": cfg.constrained_rollouts,
        "train": info,
        "log": summarize_log(lines),
        "seconds": round(seconds, 2),
    }
    atomic_write_json(out / "metrics.json", metrics)
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    summary = {"lists": len(rows), "steps": info["global_step"], "seconds": round(seconds, 1)}
    for key in ("reward", "rl/valid_rate", "rl/copy_shown_rate"):
        if key in metrics["log"]:
            summary[key.split("/")[-1]] = metrics["log"][key]["last"]
    return summary
