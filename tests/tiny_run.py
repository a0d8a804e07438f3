"""The tiny run every end-to-end test makes: a generic-format slice, a tiny random llama as the student
and the evidence teacher, each stage's budget cut to a few steps (``gr2 run --set`` overrides)."""

from __future__ import annotations

import json
from pathlib import Path

PROMPT = {"item_format": "compact", "max_history": 3, "domain_priming": False, "max_explanation_words": None,
          "order": "prerank"}  # as the quick profile: the eval adds the shuffled-input control


def tiny_overrides(student: Path) -> list[str]:
    """``section.field=value`` overrides for a run whose student is the model folder ``student``."""
    return [
        "data.k_core=2",
        "sid.levels=3", "sid.codebook_size=8", "sid.epochs=2", "sid.hidden_dims=[16]", "sid.latent_dim=8",
        "sid.batch_size=16", "sid.progress=false",
        "candidates.prerank=cooc", "candidates.n_train_examples=12",
        f"midtrain.model={student}", "midtrain.n_examples=16", "midtrain.warmup_steps=1", "midtrain.steps=1",
        "midtrain.batch_size=4", "midtrain.max_seq_len=64", "midtrain.eval_examples_per_task=2",
        "traces.teacher=evidence", "traces.gate_override=true", f"traces.prompt={json.dumps(PROMPT)}",
        "sft.steps=1", "sft.batch_size=2", "sft.max_seq_len=2048",
        "rl.steps=1", "rl.batch_size=2", "rl.num_generations=2", "rl.max_completion_length=8",
        "rl.overlong_buffer=4", "rl.n_examples=4", f"rl.prompt={json.dumps(PROMPT)}",
        "rl.constrained=false",  # 8 tokens hold no ranking (the reasoning-free variant); tests/rl covers it
        "eval.bootstrap=20", "eval.lambdamart_params.cv_folds=0", "eval.lambdamart_params.n_estimators=10",
        "eval.llm_lists=3", "eval.llm_max_new_tokens=8",
    ]
