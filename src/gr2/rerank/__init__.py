"""Classic (non-LLM) re-rankers of K-candidate lists: LambdaMART over cheap per-candidate features.

Heavy imports (LightGBM, scikit-learn) happen only when a model is fitted or loaded.
"""

from .features import FEATURE_NAMES, FeatureBuilder
from .lambdamart import LambdaMARTConfig, LambdaMARTReranker

__all__ = ["FEATURE_NAMES", "FeatureBuilder", "LambdaMARTConfig", "LambdaMARTReranker"]
