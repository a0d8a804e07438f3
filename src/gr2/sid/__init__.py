"""Semantic IDs (docs/method.md §3): items → unique L-token SIDs such as ``<s_a_97><s_b_168><s_c_137><s_d_135>``.

Importing this package is cheap (no torch); the heavy parts load on first use::

    from gr2.sid import run_sid, run_ablation, assign_new_items, render_sid, parse_sid

- :mod:`gr2.sid.config` — :class:`SidConfig`
- :mod:`gr2.prompts.sids` — render/parse SID strings (pure)
- :mod:`gr2.sid.uniqueness` — random last level, collision resolution, cold start (pure numpy)
- :mod:`gr2.sid.report` — uniqueness, buckets, codes used, perplexity (pure numpy)
- :mod:`gr2.sid.embed` — item text and cached sentence embeddings
- :mod:`gr2.sid.rqvae`, :mod:`gr2.sid.rqkmeans` — the tokenizers
- :mod:`gr2.sid.tokenizer` — training dispatch, assignment, checkpoints, ``assign_new_items``
- :mod:`gr2.sid.stage` — ``run_sid(run, cfg)``
- :mod:`gr2.sid.ablation` — ``run_ablation(run, cfg, seeds)``
"""

from __future__ import annotations

from gr2._lazy import lazy_exports
from gr2.prompts.sids import parse_sid, render_sid
from gr2.sid.config import SidConfig

_LAZY = {
    "run_sid": "gr2.sid.stage",
    "run_ablation": "gr2.sid.ablation",
    "build_sids": "gr2.sid.stage",
    "train_pairs": "gr2.sid.stage",
    "assign_new_items": "gr2.sid.tokenizer",
    "load_tokenizer": "gr2.sid.tokenizer",
    "resolve_collisions": "gr2.sid.uniqueness",
    "draw_random_levels": "gr2.sid.uniqueness",
    "uniqueness_stats": "gr2.sid.report",
}

__all__ = ["SidConfig", "parse_sid", "render_sid", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
