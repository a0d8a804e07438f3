"""Stage 1, mid-training (docs/method.md §4): the student LLM learns the SID tokens.

Light on import (no torch): the config and the task builders; the warm-up and per-task losses live in
:mod:`gr2.midtrain.train`, the phases run on :mod:`gr2.training`, and the stage is
:mod:`gr2.midtrain.stage` (``run_midtrain``).
"""

from gr2.midtrain.config import ONEREC_THINK_MIXTURE, TASKS, MidtrainConfig

__all__ = ["ONEREC_THINK_MIXTURE", "TASKS", "MidtrainConfig"]
