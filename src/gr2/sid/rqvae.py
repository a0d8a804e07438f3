"""RQ-VAE tokenizer (docs/method.md §3): MLP encoder → residual quantiser → MLP decoder.

Loss per batch (norms summed over dimensions, averaged over items)::

    ||x − x̂||²                                   reconstruction (straight-through quantisation)
  + Σ_l β ||r_l − sg[q_l]||²                      commitment
  + Σ_l ||sg[r_l] − q_l||²                        codebook term (only when EMA is off)
  + λ Σ_l C Σ_j p_{l,j}²                          diversity (soft code usage p of the batch)
  + w · InfoNCE(z_a, z_b)                         contrastive, co-interacted train pairs (a, b)

Paper switches (``SidConfig``): EMA codebooks, k-means initialisation, dead-code reset,
diversity and contrastive losses; the random last level is applied outside the network (the
model learns ``levels − random_last_levels`` levels, see :mod:`gr2.sid.uniqueness`).

Why our own quantiser rather than a library (e.g. vector-quantize-pytorch's ``ResidualVQ``):
the paper's dead-code reset (to the worst-reconstructed residual, not a random sample), its
diversity loss on soft usage and the random last level are not in such libraries, and the
remaining part (nearest code, EMA, straight-through) is ~60 lines; k-means itself comes from
scikit-learn.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gr2.sid.config import SidConfig
from gr2.sid.rqkmeans import kmeans

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` CPU threads in torch and in BLAS/OpenMP pools (scikit-learn's k-means);
    ``None`` leaves them alone. Previous settings are restored."""
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


@dataclass
class Arch:
    """What is needed to rebuild the network from a checkpoint."""

    in_dim: int
    hidden_dims: list[int]
    latent_dim: int
    levels: int  # learned levels
    codebook_size: int
    ema: bool


class ResidualQuantizer(nn.Module):
    """``levels`` codebooks of ``codebook_size`` vectors; nearest-code residual quantisation."""

    def __init__(self, levels: int, codebook_size: int, dim: int, ema: bool, decay: float = 0.99,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.levels, self.codebook_size, self.dim = levels, codebook_size, dim
        self.ema, self.decay, self.eps = ema, decay, eps
        init = torch.empty(levels, codebook_size, dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        if ema:
            # EMA codebooks are state, not parameters: no gradient ever reaches them.
            self.register_buffer("codebooks", init)
            self.register_buffer("ema_count", torch.ones(levels, codebook_size))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebooks = nn.Parameter(init)

    def distances(self, r: torch.Tensor, level: int) -> torch.Tensor:
        """Squared distances ``(B, C)`` from residuals to the codes of ``level``."""
        e = self.codebooks[level]
        return (r * r).sum(1, keepdim=True) - 2 * r @ e.t() + (e * e).sum(1)[None, :]

    @torch.no_grad()
    def set_codebook(self, level: int, centers: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        self.codebooks.data[level] = centers
        if self.ema:
            c = counts.clamp(min=1.0) if counts is not None else torch.ones(self.codebook_size)
            self.ema_count[level] = c.to(self.ema_count)
            self.ema_sum[level] = centers * c.to(centers)[:, None]

    @torch.no_grad()
    def ema_update(self, level: int, residual: torch.Tensor, codes: torch.Tensor) -> None:
        """γ-EMA of the count and sum of residuals assigned to each code (Laplace-smoothed)."""
        C = self.codebook_size
        n = torch.bincount(codes, minlength=C).to(residual.dtype)
        s = torch.zeros(C, self.dim, dtype=residual.dtype, device=residual.device).index_add_(0, codes, residual)
        self.ema_count[level].mul_(self.decay).add_(n, alpha=1 - self.decay)
        self.ema_sum[level].mul_(self.decay).add_(s, alpha=1 - self.decay)
        total = self.ema_count[level].sum()
        count = (self.ema_count[level] + self.eps) / (total + C * self.eps) * total
        self.codebooks[level] = self.ema_sum[level] / count[:, None]

    @torch.no_grad()
    def reset_codes(self, level: int, dead: torch.Tensor, vectors: torch.Tensor) -> None:
        self.codebooks.data[level, dead] = vectors
        if self.ema:
            self.ema_count[level, dead] = 1.0
            self.ema_sum[level, dead] = vectors

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes ``(B, levels)``, quantised sum ``(B, dim)``, last-level distances ``(B, C)``."""
        r = z
        codes, q_sum, d = [], torch.zeros_like(z), None
        for level in range(self.levels):
            d = self.distances(r, level)
            c = d.argmin(1)
            q = self.codebooks[level][c]
            codes.append(c)
            q_sum = q_sum + q
            r = r - q
        return torch.stack(codes, 1), q_sum, d  # type: ignore[return-value]


class RQVAE(nn.Module):
    """Encoder and decoder work on standardised inputs ``(x − mean) / std`` (per dimension).

    Sentence embeddings are unit vectors whose coordinates have a std of ~0.04: unscaled, the
    reconstruction term is hundreds of times smaller than the commitment term and the few
    epochs a CPU budget allows leave the decoder at the mean (measured on Beauty: relative
    error 0.9 after 4 epochs). ``mean``/``std`` are buffers, saved with the checkpoint.
    """

    def __init__(self, arch: Arch, ema_decay: float = 0.99) -> None:
        super().__init__()
        self.arch = arch
        self.encoder = _mlp([arch.in_dim, *arch.hidden_dims, arch.latent_dim])
        self.decoder = _mlp([arch.latent_dim, *reversed(arch.hidden_dims), arch.in_dim])
        self.quantizer = ResidualQuantizer(arch.levels, arch.codebook_size, arch.latent_dim, arch.ema, ema_decay)
        self.register_buffer("mean", torch.zeros(arch.in_dim))
        self.register_buffer("std", torch.ones(arch.in_dim))

    @torch.no_grad()
    def fit_scaler(self, x: torch.Tensor) -> None:
        """Per-dimension mean and std; the std is floored at 10% of its average, because
        embedding models have near-constant dimensions (MiniLM: one with std 0 on Beauty) that a
        plain division would blow up, making unseen items' codes depend on noise."""
        std = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
        floor = max(float(std.mean()) * 0.1, 1e-8)
        self.mean.copy_(x.mean(0))
        self.std.copy_(std.clamp(min=floor))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


@dataclass
class StepOut:
    loss: torch.Tensor
    parts: dict[str, float]
    residuals: list[torch.Tensor]
    codes: list[torch.Tensor]
    errors: list[torch.Tensor]


def train_step_losses(model: RQVAE, x: torch.Tensor, cfg: SidConfig,
                      pair_x: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepOut:
    """Forward pass and every loss term of one batch (differentiable)."""
    vq = model.quantizer
    x = model.scale(x)
    z = model.encoder(x)
    r = z
    q_sum = torch.zeros_like(z)
    commit = z.new_zeros(())
    codebook = z.new_zeros(())
    diversity = z.new_zeros(())
    residuals, codes, errors = [], [], []
    for level in range(vq.levels):
        d = vq.distances(r, level)
        c = d.argmin(1)
        q = vq.codebooks[level][c]
        commit = commit + ((r - q.detach()) ** 2).sum(1).mean()
        if not vq.ema:
            codebook = codebook + ((r.detach() - q) ** 2).sum(1).mean()
        if cfg.diversity_weight > 0:
            scale = d.mean().detach().clamp(min=1e-8) * cfg.diversity_temperature
            p = torch.softmax(-d / scale, dim=1).mean(0)
            diversity = diversity + vq.codebook_size * (p * p).sum()
        residuals.append(r.detach())
        codes.append(c)
        errors.append(((r - q) ** 2).sum(1).detach())
        q_sum = q_sum + q
        r = r - q.detach()
    z_q = z + (q_sum - z).detach()  # straight-through: the decoder's gradient goes to the encoder
    x_hat = model.decoder(z_q)
    recon = ((x_hat - x) ** 2).sum(1).mean()
    loss = recon + cfg.beta * commit + codebook + cfg.diversity_weight * diversity
    parts = {"recon": recon.item(), "commit": commit.item(), "diversity": diversity.item()}
    if pair_x is not None and cfg.contrastive_weight > 0:
        ctr = info_nce(model.encoder(model.scale(pair_x[0])), model.encoder(model.scale(pair_x[1])),
                       cfg.contrastive_temperature)
        loss = loss + cfg.contrastive_weight * ctr
        parts["contrastive"] = ctr.item()
    parts["loss"] = loss.item()
    return StepOut(loss, parts, residuals, codes, errors)


def info_nce(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: pair i is the positive of row i, the other pairs of the batch negatives."""
    za = F.normalize(za, dim=1)
    zb = F.normalize(zb, dim=1)
    logits = za @ zb.t() / temperature
    target = torch.arange(len(za), device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class RQVAETokenizer:
    """A trained RQ-VAE with the common tokenizer interface (see :mod:`gr2.sid.tokenizer`)."""

    method = "rqvae"

    def __init__(self, model: RQVAE, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        self.learned_levels = model.arch.levels
        self.codebook_size = model.arch.codebook_size
        self.history: list[dict[str, Any]] = []

    def _batches(self, x: np.ndarray, batch: int = 65536):
        for s in range(0, len(x), batch):
            xb = torch.as_tensor(np.asarray(x[s:s + batch], dtype=np.float32), device=self.device)
            z = self.model.encoder(self.model.scale(xb))
            yield xb, z, *self.model.quantizer.encode(z)

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        """Learned codes ``(N, learned_levels)`` int64."""
        out = [c.cpu().numpy() for _, _, c, _, _ in self._batches(x)]
        return np.concatenate(out) if out else np.zeros((0, self.learned_levels), dtype=np.int64)

    @torch.no_grad()
    def last_level_distances(self, x: np.ndarray) -> np.ndarray:
        """``(N, C)`` squared distances from the last learned residual to its codes (resolution cost)."""
        out = [d.cpu().numpy() for _, _, _, _, d in self._batches(x)]
        return np.concatenate(out)

    @torch.no_grad()
    def reconstruction_error(self, x: np.ndarray) -> dict[str, float]:
        """Mean ``||x − x̂||²`` and its share of the data's variance (``relative``)."""
        se, lat = 0.0, 0.0
        for xb, z, _, q, _ in self._batches(x):
            se += float(((self.model.unscale(self.model.decoder(q)) - xb) ** 2).sum())
            lat += float(((z - q) ** 2).sum())
        n = max(len(x), 1)
        var = float(((np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)) ** 2).sum()) / n
        return {"mse": se / n, "relative": (se / n) / var if var > 0 else float("nan"),
                "latent_mse": lat / n}

    def state(self) -> dict[str, Any]:
        return {"arch": asdict(self.model.arch), "ema_decay": self.model.quantizer.decay,
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu") -> RQVAETokenizer:
        model = RQVAE(Arch(**state["arch"]), state.get("ema_decay", 0.99))
        model.load_state_dict(state["state_dict"])
        return cls(model, resolve_device(device))


def train_rqvae(x: np.ndarray, cfg: SidConfig, pairs: np.ndarray | None = None) -> RQVAETokenizer:
    """Train an RQ-VAE on embeddings ``x`` (N, d) with the switches of ``cfg``.

    ``pairs`` (P, 2) holds co-interacted item indices from the training split (contrastive loss).
    Deterministic for a fixed ``cfg.seed`` on one device and thread count.
    """
    with torch_threads(cfg.num_threads):
        return _train_rqvae(x, cfg, pairs)


def _train_rqvae(x: np.ndarray, cfg: SidConfig, pairs: np.ndarray | None) -> RQVAETokenizer:
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    learned = cfg.levels - cfg.random_last_levels
    n, in_dim = x.shape
    arch = Arch(in_dim, list(cfg.hidden_dims), cfg.latent_dim, learned, cfg.codebook_size, cfg.ema)
    model = RQVAE(arch, cfg.ema_decay).to(device)
    vq = model.quantizer
    X = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    model.fit_scaler(X)

    if cfg.kmeans_init:
        with torch.no_grad():
            r = torch.cat([model.encoder(model.scale(X[s:s + 65536])) for s in range(0, n, 65536)]).cpu().numpy()
        for level in range(learned):
            centers, labels = kmeans(r, cfg.codebook_size, cfg.seed + level)
            counts = torch.as_tensor(np.bincount(labels, minlength=cfg.codebook_size), dtype=torch.float32)
            vq.set_codebook(level, torch.as_tensor(centers, device=device), counts.to(device))
            r = r - centers[labels]

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_pairs = pairs is not None and len(pairs) > 0 and cfg.contrastive_weight > 0
    pairs_t = torch.as_tensor(pairs, device=device) if use_pairs else None
    idle = torch.zeros(learned, cfg.codebook_size, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    resets = 0
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    bar = tqdm(range(cfg.epochs), desc="rq-vae", disable=not cfg.progress, leave=False)
    model.train()
    for epoch in bar:
        perm = torch.randperm(n, generator=gen).to(device)
        sums: dict[str, float] = {}
        used = torch.zeros(learned, cfg.codebook_size, dtype=torch.bool, device=device)
        for step in range(steps_per_epoch):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb = X[idx]
            pair_x = None
            if use_pairs:
                pick = torch.as_tensor(rng.integers(0, len(pairs_t), size=cfg.contrastive_batch_size), device=device)
                pb = pairs_t[pick]
                pair_x = (X[pb[:, 0]], X[pb[:, 1]])
            out = train_step_losses(model, xb, cfg, pair_x)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            with torch.no_grad():
                for level in range(learned):
                    c = out.codes[level]
                    if vq.ema:
                        vq.ema_update(level, out.residuals[level], c)
                    hit = torch.bincount(c, minlength=cfg.codebook_size) > 0
                    used[level] |= hit
                    idle[level] = torch.where(hit, torch.zeros_like(idle[level]), idle[level] + 1)
                    if cfg.dead_code_reset:
                        dead = torch.nonzero(idle[level] >= cfg.dead_code_threshold).flatten()
                        if len(dead):
                            # paper: a dead code moves to the worst-reconstructed residual
                            k = min(len(dead), len(c))
                            worst = torch.topk(out.errors[level], k).indices
                            vq.reset_codes(level, dead[:k], out.residuals[level][worst])
                            idle[level, dead[:k]] = 0
                            resets += k
            for key, v in out.parts.items():
                sums[key] = sums.get(key, 0.0) + v
        row = {k: v / steps_per_epoch for k, v in sums.items()}
        row["epoch"] = epoch
        row["codes_used"] = used.sum(1).tolist()
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", recon=f"{row['recon']:.4f}")
    model.eval()
    tok = RQVAETokenizer(model, device)
    tok.history = history
    tok.dead_code_resets = resets  # type: ignore[attr-defined]
    return tok
