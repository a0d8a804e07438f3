"""RQ-KMeans baseline: residual k-means on the raw embeddings (no network, no training loop).

Level l fits k-means (scikit-learn) to the residuals left by levels < l; an item's code at each
level is its nearest centroid. The random last level(s) apply as for the RQ-VAE: only
``levels − random_last_levels`` levels are fitted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gr2.sid.config import SidConfig


class RQKMeansTokenizer:
    method = "rqkmeans"

    def __init__(self, centroids: list[np.ndarray]) -> None:
        self.centroids = [np.asarray(c, dtype=np.float32) for c in centroids]
        self.learned_levels = len(self.centroids)
        self.codebook_size = self.centroids[0].shape[0]
        self.history: list[dict[str, Any]] = []
        self._sq = [(c * c).sum(1) for c in self.centroids]

    def _run(self, x: np.ndarray, batch: int = 32768):
        for s in range(0, len(x), batch):
            r = np.array(x[s:s + batch], dtype=np.float32)
            q = np.zeros_like(r)
            codes = np.empty((len(r), self.learned_levels), dtype=np.int64)
            d = None
            for level, cent in enumerate(self.centroids):
                d = (r * r).sum(1, keepdims=True) - 2 * r @ cent.T + self._sq[level][None, :]
                c = d.argmin(1)
                codes[:, level] = c
                q += cent[c]
                r -= cent[c]
            yield codes, q, d

    def encode(self, x: np.ndarray) -> np.ndarray:
        out = [c for c, _, _ in self._run(x)]
        return np.concatenate(out) if out else np.zeros((0, self.learned_levels), dtype=np.int64)

    def last_level_distances(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([d for _, _, d in self._run(x)])

    def reconstruction_error(self, x: np.ndarray) -> dict[str, float]:
        se = 0.0
        for s, (_, q, _) in zip(range(0, len(x), 32768), self._run(x)):
            se += float(((np.asarray(x[s:s + len(q)], dtype=np.float32) - q) ** 2).sum())
        n = max(len(x), 1)
        var = float(((np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)) ** 2).sum()) / n
        return {"mse": se / n, "relative": (se / n) / var if var > 0 else float("nan")}

    def state(self) -> dict[str, Any]:
        import torch

        return {"centroids": [torch.from_numpy(c) for c in self.centroids]}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu") -> RQKMeansTokenizer:
        return cls([c.numpy() if hasattr(c, "numpy") else np.asarray(c) for c in state["centroids"]])


def kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres and labels (scikit-learn); fewer distinct points than k → jittered copies."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float32)
    n_distinct = len(np.unique(x.round(6), axis=0))
    k_fit = min(k, n_distinct)
    km = KMeans(n_clusters=k_fit, n_init=1, random_state=seed, max_iter=100).fit(x)
    centers = km.cluster_centers_.astype(np.float32)
    labels = km.labels_.astype(np.int64)
    if k_fit < k:  # spare codes start at random data points, slightly perturbed
        rng = np.random.default_rng(seed)
        extra = x[rng.integers(0, len(x), size=k - k_fit)]
        extra = extra + 1e-3 * rng.standard_normal(extra.shape).astype(np.float32) * (x.std() + 1e-8)
        centers = np.concatenate([centers, extra.astype(np.float32)])
    return centers, labels


def train_rqkmeans(x: np.ndarray, cfg: SidConfig) -> RQKMeansTokenizer:
    """Fit ``levels − random_last_levels`` levels of residual k-means with ``cfg.codebook_size``."""
    r = np.array(x, dtype=np.float32)
    centroids = []
    for level in range(cfg.levels - cfg.random_last_levels):
        centers, labels = kmeans(r, cfg.codebook_size, cfg.seed + level)
        centroids.append(centers)
        r -= centers[labels]
    return RQKMeansTokenizer(centroids)
