"""Serving: a Python API (:class:`Reranker`) and an HTTP re-ranking service (:mod:`gr2.serve.http`)
that always answer with a valid ranking.

Importing this package is light (no torch, no FastAPI): names load on first use.

* :mod:`gr2.serve.reranker` — ``Reranker.load(run_dir)``, ``rerank(history, candidates, mode, timeout)``
* :mod:`gr2.serve.http` — ``create_app(reranker)``, ``serve(run_dir, host, port)`` (FastAPI + uvicorn)
* :mod:`gr2.serve.cli` — ``add_serve_parser(subparsers)`` for ``gr2 serve`` (imports nothing heavy)
* :mod:`gr2.serve.config` — ``ServeConfig`` (limits and switches)
* :mod:`gr2.serve.engine` — generation with per-request deadlines (direct scoring: :mod:`gr2.llm.scoring`)
* :mod:`gr2.serve.batching` — dynamic batching with a bound on the work in flight
* :mod:`gr2.serve.catalogue` — raw item ids, SIDs, cold-start SIDs for new items
"""

from __future__ import annotations

from gr2._lazy import lazy_exports

_EXPORTS = {
    "Item": "catalogue",
    "Overloaded": "batching",
    "RequestError": "reranker",
    "RerankResult": "reranker",
    "Reranker": "reranker",
    "ServeConfig": "config",
    "add_serve_parser": "cli",
    "create_app": "http",
    "serve": "http",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
