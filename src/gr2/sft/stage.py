"""The ``sft`` stage (docs/method.md §6): weighted-loss SFT on the accepted reasoning traces, or
(``objective: listwise``) the listwise objective on the direct score (:mod:`gr2.sft.listwise`).

Reads ``traces/accepted.jsonl`` (one ``{"example_id", "messages", "completion"}`` per line; a seeded
sample of ``sft.max_examples`` of them when set: RecOne's small cold-start set) — or, for
the listwise objective, ``candidates/train.parquet`` rendered with the traces' prompt format — and the
model named by ``SFTConfig.init`` (default: ``midtrain/model``); writes under ``sft/``:

* ``checkpoints/checkpoint-N`` — every ``save_steps``; a re-run after an interruption resumes from
  the latest one (deleted at the end unless ``keep_checkpoints``);
* ``tb/`` — TensorBoard logs (loss, ``nll_reasoning``/``nll_ranking``, ``loss_reasoning``/``loss_ranking``);
* ``model/`` — the final model + tokenizer (``save_pretrained``, written atomically; LoRA merged);
* ``metrics.json`` — data statistics (examples, truncated, reasoning/ranking tokens; with traces also
  ``traces_accepted``, the accepted traces the examples were sampled from), loss and its
  parts at the first and last logged step, steps, tokens/s, the full log;
* ``curve.jsonl`` — with ``curve_lists > 0``: validation N@5 against training lists seen
  (:mod:`gr2.sft.curve`).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from typing import Any

from gr2.prompts.render import PromptConfig
from gr2.runs import RunDir
from gr2.sft.config import SFTConfig

log = logging.getLogger(__name__)

OUTPUTS = ("sft/model/config.json", "sft/metrics.json")


def load_traces(run: RunDir) -> list[dict[str, Any]]:
    """The accepted SFT examples of ``traces/accepted.jsonl``."""
    path = run.file("traces", "accepted.jsonl")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sample_traces(examples: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` of ``examples`` in their own order (``sft.max_examples``); all of them
    when ``n`` is ``None`` or not smaller than their number."""
    if n is None or len(examples) <= n:
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def curve_callbacks(run: RunDir, cfg: SFTConfig, tokenizer: Any, items: Any, prompt: Any,
                    prior: Any = None) -> list[Any]:
    """The learning-curve callback (``sft/curve.jsonl``) when ``cfg.curve_lists > 0``, else none."""
    if not cfg.curve_lists:
        return []
    from gr2.lists import sample_lists
    from gr2.sft.curve import CurveCallback

    lists = sample_lists(run, "val", cfg.curve_lists, cfg.seed)
    return [CurveCallback(run.stage_dir("sft") / "curve.jsonl", tokenizer, lists, items, prompt,
                          cfg.batch_size * cfg.grad_accum, cfg.curve_points, prior)]


def position_prior(run: RunDir) -> Any:
    """The position prior of all of the run's training lists (:class:`gr2.llm.scoring.PositionPrior`),
    with the model's part starting at :data:`gr2.sft.listwise.INITIAL_MODEL_SCALE`."""
    from gr2.lists import load_lists
    from gr2.llm.scoring import PositionPrior
    from gr2.sft.listwise import INITIAL_MODEL_SCALE

    prior = PositionPrior.estimate(load_lists(run, "train")["labels"])
    return PositionPrior(prior.log_prior, INITIAL_MODEL_SCALE)


def run_sft(run: RunDir, cfg: SFTConfig) -> dict:
    """Train on the run's accepted traces (or its training lists, ``objective: listwise``), save
    ``sft/model`` and ``sft/metrics.json``. Resumes from checkpoints left by an interrupted run of the
    same config."""
    from gr2.llm.registry import load
    from gr2.prompts.items import load_item_texts, trained_prompt
    from gr2.runs import model_source
    from gr2.training.dist import is_main
    from gr2.training.loop import latest_checkpoint

    source = model_source(run, cfg.init)
    model, tok = load(source)
    out = run.stage_dir("sft")
    if latest_checkpoint(out / "checkpoints") is None and is_main():  # a fresh start: an old curve is another model's
        (out / "curve.jsonl").unlink(missing_ok=True)
    prompt = trained_prompt(run.path, "sft") or PromptConfig()
    items = load_item_texts(run) if cfg.objective == "listwise" or cfg.curve_lists else None
    prior = position_prior(run) if cfg.objective == "listwise" and cfg.listwise_position_prior else None
    callbacks = curve_callbacks(run, cfg, tok, items, prompt, prior)
    meta = {"init": cfg.init, "init_path": source}
    if cfg.objective == "listwise":
        from gr2.lists import sample_lists
        from gr2.sft.listwise import encode_lists, train_listwise

        lists = sample_lists(run, "train", cfg.listwise_lists, cfg.seed)
        examples = encode_lists(tok, lists, items, prompt, cfg.listwise_shuffle, cfg.seed, prior)
        log.info("sft (listwise): %d training lists, init %s (%s)", len(examples), cfg.init, source)
        metrics = train_listwise(model, tok, examples, cfg, out, meta=meta, callbacks=callbacks, prior=prior)
        data = metrics["data"]["lists"]
    else:
        from gr2.sft.train import train_sft

        accepted = load_traces(run)
        examples = sample_traces(accepted, cfg.max_examples, cfg.seed)
        meta["traces_accepted"] = len(accepted)
        log.info("sft: %d examples (of %d accepted traces), init %s (%s)", len(examples), len(accepted),
                 cfg.init, source)
        metrics = train_sft(model, tok, examples, cfg, out, meta=meta, callbacks=callbacks)
        data = metrics["data"]["examples"]
    if not cfg.keep_checkpoints and is_main():  # every process is past training: the model save waits for all
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {"objective": cfg.objective, "examples": data, "steps": metrics["steps"],
            "loss": f"{metrics['loss_start']}->{metrics['loss_end']}", "seconds": metrics["seconds"]}
