"""Stage 2, reasoning traces (docs/method.md §5): a teacher writes rationales for re-ranking lists, kept by
rejection sampling (target hidden, top-1 must hit it) or written for a revealed target (targeted).

Light on import (no torch): the config here; teachers in :mod:`gr2.traces.teachers`, the store in
:mod:`gr2.traces.store`, the samplers in :mod:`gr2.traces.sampling`, statistics in
:mod:`gr2.traces.stats` and the stage in :mod:`gr2.traces.stage` (``run_traces``).
"""

from gr2.traces.config import TracesConfig

__all__ = ["TracesConfig"]
