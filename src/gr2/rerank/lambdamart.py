"""LambdaMART re-ranker: LightGBM ``lambdarank`` over the cheap per-candidate features of
:mod:`gr2.rerank.features`.

The number of trees is chosen by grouped K-fold cross-validation (whole lists per fold, folds drawn
with ``seed``) with early stopping on the mean validation NDCG@5 over the folds; the final model is
then refitted on all lists with that many trees. Training must be honest (``docs/method.md`` §2):
fit on validation-target lists, never on the lists you evaluate.

Example::

    fb = FeatureBuilder().fit(items_df, train_sequences)
    rr = LambdaMARTReranker(fb, LambdaMARTConfig(seed=0)).fit(val_lists)
    orders = rr.rerank(test_lists)          # list of permutations of 0..K-1, best first
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .features import FeatureBuilder, list_arrays

__all__ = ["LambdaMARTConfig", "LambdaMARTReranker"]


@dataclass
class LambdaMARTConfig:
    """Hyper-parameters of :class:`LambdaMARTReranker`."""

    n_estimators: int = 1000
    """Maximum number of boosting rounds (trees). With ``cv_folds >= 2`` the actual number is chosen
    by cross-validation (early stopping); with ``cv_folds < 2`` exactly this many trees are grown."""
    learning_rate: float = 0.03
    """Shrinkage of every tree."""
    num_leaves: int = 15
    """Maximum leaves per tree."""
    min_child_samples: int = 50
    """Minimum number of candidates (rows) in a leaf (LightGBM ``min_data_in_leaf``)."""
    cv_folds: int = 5
    """Folds of the grouped cross-validation that picks the number of trees (0 or 1: no CV)."""
    early_stopping_rounds: int = 50
    """Stop when the mean validation NDCG@``eval_at`` has not improved for this many rounds."""
    eval_at: int = 5
    """Cut-off of the NDCG used for early stopping."""
    colsample_bytree: float = 1.0
    """Share of the features drawn for each tree (1.0 = all)."""
    features: tuple[str, ...] | None = None
    """Names (from :data:`~gr2.rerank.features.FEATURE_NAMES`) of the features the model uses, e.g. for
    ablations; ``None`` uses all of them."""
    seed: int = 0
    """Seed of the fold split and of LightGBM."""
    num_threads: int = 2
    """LightGBM threads (results are identical for a given value thanks to ``deterministic=True``)."""
    extra_params: dict[str, Any] = field(default_factory=dict)
    """Further LightGBM parameters (native names), applied last."""

    def lgb_params(self) -> dict[str, Any]:
        """Native LightGBM parameters shared by the CV runs and the final model."""
        p: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [int(self.eval_at)],
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "feature_fraction": float(self.colsample_bytree),
            "seed": int(self.seed),
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": int(self.num_threads),
            "verbosity": -1,
        }
        p.update(self.extra_params)
        return p


def _grouped_folds(n_lists: int, k: int, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row-index folds that keep every list whole (lists are ``k`` contiguous rows)."""
    perm = np.random.default_rng(seed).permutation(n_lists)
    fold_of = np.empty(n_lists, dtype=np.int64)
    fold_of[perm] = np.arange(n_lists) % n_folds
    rows_fold = np.repeat(fold_of, k)
    rows = np.arange(n_lists * k, dtype=np.int64)
    return [(rows[rows_fold != f], rows[rows_fold == f]) for f in range(n_folds)]


class LambdaMARTReranker:
    """Re-orders K-candidate lists with a LightGBM LambdaMART model.

    Args:
        features: a fitted :class:`~gr2.rerank.features.FeatureBuilder`.
        config: hyper-parameters (defaults: :class:`LambdaMARTConfig`).

    After :meth:`fit`: ``booster`` (``lightgbm.Booster``), ``n_trees``, ``cv_curve`` (mean CV NDCG@5
    per round, empty without CV), ``fit_info`` (counts and timings).
    """

    def __init__(self, features: FeatureBuilder, config: LambdaMARTConfig | None = None) -> None:
        if not features.fitted:
            raise ValueError("the FeatureBuilder must be fitted first")
        self.features = features
        self.config = config or LambdaMARTConfig()
        self.booster: Any = None
        self.n_trees = 0
        self.cv_curve: list[float] = []
        self.fit_info: dict[str, Any] = {}
        all_names = list(features.feature_names)
        if self.config.features is None:
            self.feature_names: list[str] = all_names
        else:
            unknown = [f for f in self.config.features if f not in all_names]
            if unknown or not self.config.features:
                raise ValueError(f"unknown or empty feature selection {unknown}; choose from {all_names}")
            self.feature_names = [f for f in all_names if f in set(self.config.features)]
        self._cols = np.array([all_names.index(f) for f in self.feature_names], dtype=np.int64)

    # ------------------------------------------------------------------ fit
    def fit(self, lists_df: pd.DataFrame) -> LambdaMARTReranker:
        """Train on lists with graded ``labels``; lists without any positive label are dropped."""
        import lightgbm as lgb

        cfg = self.config
        t0 = time.perf_counter()
        la = list_arrays(lists_df)
        if la.labels is None:
            raise KeyError("fit needs a 'labels' column")
        labels = la.labels
        if np.any(labels < 0) or np.any(labels != np.round(labels)):
            raise ValueError("labels must be non-negative integers")
        keep = labels.max(axis=1) > 0 if la.n else np.zeros(0, dtype=bool)
        n_dropped = int((~keep).sum())
        sub = lists_df.iloc[np.flatnonzero(keep)]
        if len(sub) == 0:
            raise ValueError("no list with a positive label to train on")
        X, groups, _ = self.features.transform(sub)
        X, names = self._select(X), self.feature_names
        y = labels[keep].reshape(-1).astype(np.int64)
        n_lists, k = len(sub), int(groups[0])
        t_feat = time.perf_counter() - t0
        params = cfg.lgb_params()

        self.cv_curve = []
        n_trees = int(cfg.n_estimators)
        if cfg.cv_folds >= 2:
            if n_lists < cfg.cv_folds:
                raise ValueError(f"{n_lists} lists are too few for {cfg.cv_folds}-fold CV")
            folds = _grouped_folds(n_lists, k, int(cfg.cv_folds), int(cfg.seed))
            dset = lgb.Dataset(X, label=y, group=groups, feature_name=names, free_raw_data=False,
                               params={"verbosity": -1})
            res = lgb.cv(
                params,
                dset,
                num_boost_round=int(cfg.n_estimators),
                folds=folds,
                callbacks=[lgb.early_stopping(int(cfg.early_stopping_rounds), first_metric_only=True,
                                              verbose=False)],
            )
            key = next(kk for kk in res if kk.endswith(f"ndcg@{cfg.eval_at}-mean"))
            self.cv_curve = [float(v) for v in res[key]]
            n_trees = int(np.argmax(self.cv_curve)) + 1  # the curve is truncated at the best round
        t_cv = time.perf_counter() - t0 - t_feat

        final = lgb.Dataset(X, label=y, group=groups, feature_name=names, params={"verbosity": -1})
        self.booster = lgb.train(params, final, num_boost_round=n_trees)
        self.n_trees = int(self.booster.num_trees())
        self.fit_info = {
            "n_lists": n_lists,
            "n_dropped_no_positive": n_dropped,
            "k": k,
            "n_trees": self.n_trees,
            "cv_best_ndcg": max(self.cv_curve) if self.cv_curve else None,
            "features_s": round(t_feat, 3),
            "cv_s": round(t_cv, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        }
        return self

    # -------------------------------------------------------------- predict
    def _select(self, X: np.ndarray) -> np.ndarray:
        """The configured feature columns of a full feature matrix."""
        return X if len(self._cols) == X.shape[1] else np.ascontiguousarray(X[:, self._cols])

    def _check_fitted(self) -> None:
        if self.booster is None:
            raise RuntimeError("LambdaMARTReranker is not fitted")

    def score(self, lists_df: pd.DataFrame) -> np.ndarray:
        """Model scores ``(n_lists, K)`` float64, candidates in pre-rank order; higher is better."""
        self._check_fitted()
        la = list_arrays(lists_df)
        if la.n == 0:
            return np.zeros((0, la.k), dtype=np.float64)
        X, _, _ = self.features.transform_arrays(la)
        X = self._select(X)
        pred = self.booster.predict(X, num_threads=int(self.config.num_threads))
        return np.asarray(pred, dtype=np.float64).reshape(la.n, la.k)

    def rerank(self, lists_df: pd.DataFrame) -> list[np.ndarray]:
        """One permutation of ``0..K-1`` per list (candidate positions, best first).

        Ties in the model score are broken by the pre-rank position (a stable sort).
        """
        s = self.score(lists_df)
        orders = np.argsort(-s, axis=1, kind="stable")
        return [o.astype(np.int64) for o in orders]

    def feature_importances(self, importance_type: str = "gain") -> dict[str, float]:
        """Total ``gain`` (or ``split`` count) per feature, largest first."""
        self._check_fitted()
        imp = self.booster.feature_importance(importance_type=importance_type)
        pairs = sorted(zip(self.feature_names, (float(v) for v in imp)), key=lambda t: -t[1])
        return dict(pairs)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | Path) -> Path:
        """Write ``model.txt`` (LightGBM text), ``features.joblib`` (builder state) and
        ``meta.json`` (config, feature names, CV curve, fit info) into directory ``path``."""
        import joblib

        self._check_fitted()
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(d / "model.txt"))
        joblib.dump(self.features.state_dict(), d / "features.joblib", compress=3)
        meta = {
            "config": asdict(self.config),
            "feature_names": self.feature_names,
            "n_trees": self.n_trees,
            "cv_curve": self.cv_curve,
            "fit_info": self.fit_info,
        }
        (d / "meta.json").write_text(json.dumps(meta, indent=2))
        return d

    @classmethod
    def load(cls, path: str | Path) -> LambdaMARTReranker:
        """Inverse of :meth:`save`."""
        import joblib
        import lightgbm as lgb

        d = Path(path)
        meta = json.loads((d / "meta.json").read_text())
        fb = FeatureBuilder.from_state_dict(joblib.load(d / "features.joblib"))
        cfg = dict(meta["config"])
        if cfg.get("features") is not None:
            cfg["features"] = tuple(cfg["features"])
        rr = cls(fb, LambdaMARTConfig(**cfg))
        rr.booster = lgb.Booster(model_file=str(d / "model.txt"))
        rr.n_trees = int(meta["n_trees"])
        rr.cv_curve = list(meta["cv_curve"])
        rr.fit_info = dict(meta["fit_info"])
        if list(meta["feature_names"]) != rr.feature_names:
            raise ValueError("saved feature names differ from the feature builder's")
        return rr
