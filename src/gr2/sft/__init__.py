"""Stage 3a, SFT (docs/method.md §6): fine-tune on the accepted reasoning traces with a loss that weighs
reasoning tokens by λ_r and ranking tokens by λ_o.

Light on import (no torch): the config and the token-weight functions; training lives in
:mod:`gr2.sft.train` (``train_sft``, ``WeightedSFTTrainer``) and the stage in :mod:`gr2.sft.stage`
(``run_sft``).
"""

from gr2.sft.config import SFTConfig

__all__ = ["SFTConfig"]
