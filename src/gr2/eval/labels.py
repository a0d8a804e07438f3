"""Readable names of the LLM rows: what each model is, read from the config of the run that trained it.

A run's SFT model is "SFT (rejection traces)" or "SFT (targeted traces)" (``traces.mode``); its RL
model, started from that SFT model, is "GR2 (rejection → RL)", "targeted → RL", or with
``rl.reasoning=false`` "reasoning-free GR2" / "reasoning-free targeted → RL" (docs/method.md §6-7, §9).
The same holds for a variant trained inside the run (``variants/targeted/sft``, :mod:`gr2.variants`),
so the paper's table reads the same whichever run is the base. A student trained with the listwise
objective (``sft.objective: listwise``, no traces) is "SFT (listwise)" ("SFT (listwise + position
prior)" with ``sft.listwise_position_prior``), and its RL model "listwise → RL" ("reasoning-free
listwise → RL"). Any other model keeps its own name.
"""

from __future__ import annotations

from gr2.runs import RunDir, run_stage_model


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
    if stage == "sft":
        if listwise:
            return "SFT", "listwise + position prior" if sft_cfg.get("listwise_position_prior") else "listwise"
        return "SFT", f"{traces} traces"
    if stage == "rl" and rl.get("init", "sft") == "sft" and listwise:
        return ("listwise → RL" if rl.get("reasoning", True) else "reasoning-free listwise → RL"), None
    if stage == "rl" and rl.get("init", "sft") == "sft":
        trained = ("GR2", "rejection → RL") if traces == "rejection" else (f"{traces} → RL", None)
        if rl.get("reasoning", True):
            return trained
        return ("reasoning-free GR2" if traces == "rejection" else f"reasoning-free {traces} → RL"), None
    return model, None
