"""gr2 — a generative reasoning re-ranker for recommender systems (the GR2 method).

The pipeline runs in a run directory, one stage at a time (see :mod:`gr2.pipeline`)::

    import gr2
    cfg = gr2.load_config(gr2.profile_path("quick"))
    gr2.run_pipeline("runs/beauty-quick", cfg)

Names are imported on first use so that ``import gr2.data`` stays light.
"""

from __future__ import annotations

from gr2._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "gr2.config",
    "load_config": "gr2.config",
    "profile_path": "gr2.config",
    "run_pipeline": "gr2.pipeline",
    "run_stage": "gr2.pipeline",
    "RunDir": "gr2.runs",
}
__all__ = [*_EXPORTS, "__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
