"""LLM helpers: the model registry (bundled models, GGUF conversion) and the SID vocabulary.

Importing this package is light (no torch, no transformers): names are loaded on first use.

* :mod:`gr2.llm.registry` — the known models, ``resolve``, ``load``, ``list_models``.
* :mod:`gr2.llm.installer` — ``install`` (fetch the GGUF parts, check, convert once), ``uninstall``.
* :mod:`gr2.llm.models_cli` — the ``gr2 models ...`` command (``add_models_parser``, ``models_command``).
* :mod:`gr2.llm.vocab` — ``sid_tokens``, ``add_sid_tokens``, ``sid_token_ids`` (imports torch).
* :mod:`gr2.llm.retrieval` — the model as a full-catalogue retriever: the mid-training prompt
  (``default_prompt_fn``), constrained beam retrieval (``evaluate_retrieval``), ``retrieval_metrics``.
"""

from __future__ import annotations

from gr2._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_MODEL": "registry",
    "MODELS": "registry",
    "ModelError": "registry",
    "ModelInstallError": "registry",
    "ModelNotFoundError": "registry",
    "ModelNotInstalledError": "registry",
    "add_models_parser": "models_cli",
    "install": "installer",
    "list_models": "registry",
    "load": "registry",
    "models_command": "models_cli",
    "resolve": "registry",
    "add_sid_tokens": "vocab",
    "sid_id_table": "vocab",
    "sid_token_ids": "vocab",
    "sid_tokens": "vocab",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
