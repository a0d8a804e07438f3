"""Stage 1, mid-training (method.md §4): the student LLM learns the SID tokens.

Light on import (no torch): the config and the task builders; training lives in
:mod:`gr2.midtrain.train` and the stage in :mod:`gr2.midtrain.stage` (``run_midtrain``).
"""

from gr2.midtrain.config import ONEREC_THINK_MIXTURE, TASKS, MidtrainConfig

__all__ = ["ONEREC_THINK_MIXTURE", "TASKS", "MidtrainConfig"]
