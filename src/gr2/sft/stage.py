"""The ``sft`` stage (method.md §6): weighted-loss SFT on the accepted reasoning traces.

Reads ``traces/accepted.jsonl`` (one ``{"example_id", "messages", "completion"}`` per line) and the
model named by ``SFTConfig.init`` (default: ``midtrain/model``); writes under ``sft/``:

* ``checkpoints/checkpoint-N`` — every ``save_steps``; a re-run after an interruption resumes from
  the latest one (deleted at the end unless ``keep_checkpoints``);
* ``tb/`` — TensorBoard logs (loss, ``nll_reasoning``/``nll_ranking``, ``loss_reasoning``/``loss_ranking``);
* ``model/`` — the final model + tokenizer (``save_pretrained``, written atomically; LoRA merged);
* ``metrics.json`` — data statistics (examples, truncated, reasoning/ranking tokens), loss and its
  parts at the first and last logged step, steps, tokens/s, the full log.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

from gr2.runs import RunDir
from gr2.sft.config import SFTConfig

log = logging.getLogger(__name__)

OUTPUTS = ("sft/model/config.json", "sft/metrics.json")


def load_traces(run: RunDir) -> list[dict[str, Any]]:
    """The accepted SFT examples of ``traces/accepted.jsonl``."""
    path = run.file("traces", "accepted.jsonl")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def run_sft(run: RunDir, cfg: SFTConfig) -> dict:
    """Train on the run's accepted traces, save ``sft/model`` and ``sft/metrics.json``. Resumes from
    checkpoints left by an interrupted run of the same config."""
    from gr2.llm.registry import load
    from gr2.runs import model_source
    from gr2.sft.train import train_sft

    examples = load_traces(run)
    source = model_source(run, cfg.init)
    model, tok = load(source)
    out = run.stage_dir("sft")
    log.info("sft: %d examples, init %s (%s)", len(examples), cfg.init, source)
    metrics = train_sft(model, tok, examples, cfg, out, meta={"init": cfg.init, "init_path": source})
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {"examples": metrics["data"]["examples"], "steps": metrics["steps"],
            "loss": f"{metrics['loss_start']}->{metrics['loss_end']}", "seconds": metrics["seconds"]}
