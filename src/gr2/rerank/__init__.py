"""Classic (non-LLM) re-rankers of K-candidate lists: LambdaMART over cheap per-candidate features
(optionally with an LLM's score of each candidate as extra features: the eval's fusion row).

Heavy imports (LightGBM, scikit-learn) happen only when a model is fitted or loaded.
"""

from .features import (
    FEATURE_NAMES,
    LLM_FEATURE_NAMES,
    LLM_SCORES_COLUMN,
    FeatureBuilder,
)
from .lambdamart import LambdaMARTConfig, LambdaMARTReranker

__all__ = ["FEATURE_NAMES", "LLM_FEATURE_NAMES", "LLM_SCORES_COLUMN", "FeatureBuilder", "LambdaMARTConfig",
           "LambdaMARTReranker"]
