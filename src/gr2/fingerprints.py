"""What a stage's fingerprint (:meth:`gr2.config.RunConfig.fingerprint`) and the trace store's
sampling key (:func:`gr2.traces.sampling.sampling_key`) leave out: fields added after runs were made,
at the value that keeps what those runs did. No gr2 imports: any layer may use it."""

from __future__ import annotations

from typing import Any


def without_neutral(section: dict[str, Any]) -> dict[str, Any]:
    """``section`` without the :data:`NEUTRAL_FIELDS` at their neutral value, in nested settings too
    (``rl.prompt.reasoning_format``)."""
    return {k: without_neutral(v) if isinstance(v, dict) else v for k, v in section.items()
            if not (k in NEUTRAL_FIELDS and v == NEUTRAL_FIELDS[k])}


#: Fields added after runs were made with the behaviour their value keeps (``name: value``, in any
#: section or nested setting): a stage's fingerprint leaves them out at that value. A new field whose
#: default changes what a stage does must not be listed: finished runs then re-run that stage, as they should.
NEUTRAL_FIELDS: dict[str, Any] = {
    "group_by_length": False,  # training batches as before (random)
    "compact_lm_head": True,  # the same log-probabilities as TRL's every-position path (tests/training)
    "base_urls": [],  # traces: one server, ``base_url``, as before
    "max_examples": None,  # sft: every accepted trace, as before
    "reasoning_format": "free",  # prompts (traces, rl): the free-text explanation, as before
    "engine": "pandas",  # data: the in-memory path, as before (duckdb writes the same files)
    "seeded_rollouts": False,  # rl, rating: transformers' own sampler, as before
    "torch_compile": False,  # training: eager PyTorch, as before
    "liger_kernels": False,  # training: PyTorch's own kernels, as before
    "rollout_cache": "dynamic",  # rl, rating: transformers' default cache, as before
}
