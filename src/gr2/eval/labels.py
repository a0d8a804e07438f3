"""Readable names of the LLM rows: what each model is, read from the config of the run that trained it.

A run's SFT model is "SFT (rejection traces)" or "SFT (targeted traces)" (``traces.mode``); its RL
model, started from that SFT model, is "GR2 (rejection → RL)", "targeted → RL", or with
``rl.reasoning=false`` "reasoning-free GR2" / "reasoning-free targeted → RL" (docs/method.md §6-7, §9).
The same holds for a variant trained inside the run (``variants/targeted/sft``, :mod:`gr2.variants`),
so the paper's table reads the same whichever run is the base. A student trained with the listwise
objective (``sft.objective: listwise``, no traces) is "SFT (listwise)" ("SFT (listwise + position
prior)" with ``sft.listwise_position_prior``), and its RL model "listwise → RL" ("reasoning-free
listwise → RL"). The RecZero / RecOne variants (docs/method.md §10): an RL model started from the
mid-trained model (``rl.init: midtrain``, no SFT) is "pure RL (RecZero-style)"; an SFT model trained on a
sample of ``sft.max_examples`` traces is "SFT (cold start on N rejection traces)" and the RL model
started from it "RecOne (cold-start SFT on N traces → RL)" (each "reasoning-free ..." with
``rl.reasoning=false``). Any other model keeps its own name.
"""

from __future__ import annotations

import json

from gr2.runs import RunDir, run_stage_model


def _cold_start(run: RunDir, max_examples: int | None) -> int | None:
    """The traces a ``sft.max_examples`` SFT trained on: ``max_examples``, or fewer when the run had
    fewer accepted traces (``traces_accepted`` of its ``sft/metrics.json``); ``None`` without a cap."""
    if max_examples is None:
        return None
    try:
        accepted = json.loads(run.file("sft", "metrics.json").read_text(encoding="utf-8"))["traces_accepted"]
    except (OSError, ValueError, KeyError, TypeError):
        return max_examples
    return min(int(max_examples), int(accepted))


def model_label(run: RunDir, model: str) -> tuple[str, str | None]:
    """``(system, qualifier)`` of ``model`` as an LLM row of ``run``'s table; a row is named
    ``system (qualifier, mode[, control])`` (:func:`gr2.eval.llm_rows.llm_row_specs`)."""
    found = run_stage_model(run, model)
    config = (found[0].manifest().get("config") or {}) if found else {}
    if not config:  # not a run's stage model, or a run that recorded no config
        return model, None
    stage = found[1]
    traces = (config.get("traces") or {}).get("mode", "rejection")
    rl = config.get("rl") or {}
    sft_cfg = config.get("sft") or {}
    listwise = sft_cfg.get("objective") == "listwise"
    cold_start = None if listwise else _cold_start(found[0], sft_cfg.get("max_examples"))  # RecOne
    if stage == "sft":
        if listwise:
            return "SFT", "listwise + position prior" if sft_cfg.get("listwise_position_prior") else "listwise"
        return "SFT", f"{traces} traces" if cold_start is None else f"cold start on {cold_start} {traces} traces"
    if stage != "rl":
        return model, None
    reasoning = rl.get("reasoning", True)
    init = rl.get("init", "sft")
    if init == "midtrain":
        system, qualifier = "pure RL", "RecZero-style"
    elif init != "sft":  # RL from another model: its own name
        return model, None
    elif cold_start is not None:
        kind = "" if traces == "rejection" else f"{traces} "
        system, qualifier = "RecOne", f"cold-start SFT on {cold_start} {kind}traces → RL"
    elif listwise:
        system, qualifier = "listwise → RL", None
    elif traces == "rejection":  # the paper's GR2; its reasoning-free variant is named without the recipe
        system, qualifier = "GR2", "rejection → RL" if reasoning else None
    else:
        system, qualifier = f"{traces} → RL", None
    # every RL model trained with ranking-only answers (rl.reasoning=false) says so, whatever its recipe
    return ("" if reasoning else "reasoning-free ") + system, qualifier
