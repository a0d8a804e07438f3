"""The rating baselines, each fitted on a split's fit ratings (:func:`gr2.rating.data.fit_ratings`)
and predicting ``(user, item)`` pairs:

* **global mean** — the mean training rating, for everyone;
* **item mean** — the item's mean training rating; an item without one gets the global mean;
* **matrix factorisation** — scikit-surprise's ``SVD``: biased MF (``μ + b_u + b_i + q_iᵀp_u``)
  fitted by SGD on the explicit ratings, predictions clipped to [1, 5]; an unseen user or item
  falls back to the biases it has. (``implicit`` and ``lightfm`` model implicit feedback, not
  ratings; surprise installs from a wheel: docs/rating.md.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gr2.prompts.rating import RATING_MAX, RATING_MIN

__all__ = ["global_mean", "item_mean", "matrix_factorisation"]


def global_mean(fit: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.full(len(items), float(fit["rating"].mean()))


def item_mean(fit: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    means = fit.groupby("item")["rating"].mean()
    return pd.Series(items).map(means).fillna(float(fit["rating"].mean())).to_numpy(float)


def matrix_factorisation(fit: pd.DataFrame, users: np.ndarray, items: np.ndarray, factors: int = 100,
                         epochs: int = 20, lr: float = 0.005, reg: float = 0.02, seed: int = 0) -> np.ndarray:
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError as exc:  # a core dependency (pyproject.toml); say how to get it back
        raise RuntimeError("the matrix-factorisation baseline needs scikit-surprise: "
                           "pip install scikit-surprise==1.1.5") from exc
    data = Dataset.load_from_df(fit[["user", "item", "rating"]], Reader(rating_scale=(RATING_MIN, RATING_MAX)))
    model = SVD(n_factors=factors, n_epochs=epochs, lr_all=lr, reg_all=reg, random_state=seed)
    model.fit(data.build_full_trainset())
    return np.array([model.predict(int(u), int(i)).est for u, i in zip(users, items)], dtype=float)
