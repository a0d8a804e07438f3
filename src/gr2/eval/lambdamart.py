"""The LambdaMART re-ranker of the results table (the bar an LLM re-ranker must clear): fitted on
validation lists over :class:`gr2.rerank.FeatureBuilder` features, saved under ``eval/<folder>/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from gr2.eval.config import EvalConfig
from gr2.runs import RunDir, atomic_path, atomic_write_json

if TYPE_CHECKING:
    from gr2.rerank import FeatureBuilder, LambdaMARTReranker


def fit_lambdamart(run: RunDir, features: FeatureBuilder, val_lists: pd.DataFrame, cfg: EvalConfig,
                   folder: str) -> LambdaMARTReranker:
    """LambdaMART (``cfg.lambdamart_params``) over ``features`` (a fitted
    :class:`gr2.rerank.FeatureBuilder`) fitted on ``val_lists``; the model and its feature importances are
    saved under ``eval/<folder>/``."""
    from gr2.rerank import LambdaMARTConfig, LambdaMARTReranker

    config = LambdaMARTConfig(**{"seed": cfg.seed, **cfg.lambdamart_params})
    model = LambdaMARTReranker(features, config).fit(val_lists)
    out = run.stage_dir("eval") / folder
    with atomic_path(out / "model") as tmp:
        model.save(tmp)  # LightGBM text model, feature state, meta.json with the fit info
    atomic_write_json(out / "importances.json", model.feature_importances())
    return model
