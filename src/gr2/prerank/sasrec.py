"""SASRec (Kang & McAuley, 2018) in plain PyTorch, trained with a full-softmax objective.

Architecture: item embedding (id 0 = padding, so catalogue ids are shifted by +1 internally) + learned
positional embedding → dropout → ``blocks`` pre-norm causal self-attention blocks
(:class:`torch.nn.TransformerEncoderLayer`, ``norm_first=True``) → LayerNorm. The score of item ``i``
is ``h · E[i]`` with the input embedding table ``E`` (tied input/output embeddings).

Training: every position of every training sequence predicts the next item with a cross-entropy over
the *whole* catalogue (no sampled negatives). Sequences are right-padded, so a plain causal mask keeps
real positions from seeing padding; a history's representation is read at its last real position.
Early stopping on seen-filtered validation NDCG@10 keeps the best weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .base import Preranker, _check_ids, full_catalogue_metrics

__all__ = ["SASRecConfig", "SASRecModel", "SASRecPreranker", "full_softmax_loss", "sampled_softmax_loss"]

logger = logging.getLogger(__name__)


@dataclass
class SASRecConfig:
    """Hyper-parameters of :class:`SASRecPreranker`.

    Attributes:
        hidden: width of item/position embeddings and of the transformer blocks.
        blocks: number of causal self-attention blocks.
        heads: attention heads per block (``hidden`` must be divisible by it).
        dropout: dropout on the embeddings and inside every block (attention, feed-forward, residuals).
        max_len: most recent items of a history the model reads; longer histories are truncated from
            the left (training uses the last ``max_len + 1`` items of each sequence).
        ff_mult: the feed-forward inner width is ``ff_mult * hidden``.
        n_negatives: ``None`` (default) trains with the full softmax over the whole catalogue; an integer
            uses a sampled softmax against that many uniformly drawn negatives shared by the batch
            (cheaper per epoch on large catalogues, usually a little less accurate).
        lr: AdamW learning rate (2e-3 with batch 128 reaches the best validation NDCG@10 on Beauty
            in about 10 epochs; 1e-3 with batch 256 needs several times more).
        weight_decay: AdamW weight decay (applied to all parameters).
        batch_size: training sequences per optimisation step.
        length_buckets: batches are cut from groups of ``length_buckets * batch_size`` shuffled sequences
            sorted by length (less padding, ~2x faster epochs on Beauty); 1 = plain shuffled batches.
        max_epochs: upper bound on training epochs.
        patience: stop after this many validation evaluations without a better NDCG@10.
        eval_every: evaluate on the validation pairs every this many epochs.
        valid_max_users: evaluate on at most this many validation pairs (a fixed, seeded sample);
            ``None`` uses all of them.
        seed: seeds parameter init, dropout and the batch order (runs with equal seeds are identical).
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        num_threads: torch intra-op threads; ``None`` uses the CPUs this process may run on. On a CPU
            shared with other busy processes, 1 thread can be several times faster than 2 (measured).
        score_batch_size: histories per forward pass in :meth:`SASRecPreranker.score`.
        progress: show a tqdm bar over epochs.
    """

    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    ff_mult: int = 1
    n_negatives: int | None = None
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    length_buckets: int = 32
    max_epochs: int = 200
    patience: int = 3
    eval_every: int = 1
    valid_max_users: int | None = None
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None
    score_batch_size: int = 1024
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SASRecConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SASRecConfig fields: {sorted(unknown)}")
        return cls(**d)


class SASRecModel(nn.Module):
    """The SASRec network. Inputs are *shifted* ids (0 = padding, item i ↦ i+1), right-padded."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError("hidden must be divisible by heads")
        self.n_items = n_items
        self.max_len = cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.hidden,
            nhead=cfg.heads,
            dim_feedforward=cfg.ff_mult * cfg.hidden,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=cfg.blocks, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(cfg.hidden)
        self.scale = math.sqrt(cfg.hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.item_emb.weight, std=self.scale**-1)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq`` (B, L) shifted ids → hidden states (B, L, hidden)."""
        L = seq.shape[1]
        pos = torch.arange(L, device=seq.device)
        x = self.item_emb(seq) * self.scale + self.pos_emb(pos)[None]
        x = self.emb_dropout(x) * (seq > 0).unsqueeze(-1)
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=seq.device, dtype=x.dtype)
        x = self.encoder(x, mask=mask, is_causal=True)
        return self.final_norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., hidden) → catalogue logits (..., n_items) via the tied embedding table."""
        return h @ self.item_emb.weight[1:].T


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ E.T`` against ``y`` over the whole catalogue, computed in row chunks.

    Exactly the full softmax of ``F.cross_entropy(h @ E.T, y)``, but the (N, n_items) logits never exist
    at once: each chunk's softmax gradient is formed and multiplied back immediately (forward computes
    the gradients, backward only scales them). About 1.5x faster on CPU and far lighter on memory.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, E: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
        n = h.shape[0]
        grad_h = torch.empty_like(h)
        grad_E = torch.zeros_like(E)
        total = h.new_zeros((), dtype=torch.float32)
        for s in range(0, n, chunk):
            hc, yc = h[s : s + chunk], y[s : s + chunk]
            logits = (hc @ E.T).float()
            lse = torch.logsumexp(logits, dim=1)
            total += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            prob = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            prob[torch.arange(len(yc), device=h.device), yc] -= 1.0  # d loss / d logits (unscaled)
            prob = prob.to(h.dtype)
            grad_h[s : s + chunk] = prob @ E
            grad_E.addmm_(prob.T, hc)
        ctx.grads = (grad_h / max(n, 1), grad_E / max(n, 1))
        return (total / max(n, 1)).to(h.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        grad_h, grad_E = ctx.grads
        del ctx.grads
        return grad_h * g, grad_E * g, None, None


def full_softmax_loss(h: torch.Tensor, E: torch.Tensor, y: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """``F.cross_entropy(h @ E.T, y)`` (mean) without materialising all logits; differentiable in h, E."""
    return _FusedLinearCrossEntropy.apply(h, E, y, chunk)


def sampled_softmax_loss(h: torch.Tensor, E: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each target against one shared set of uniformly drawn negatives ``neg``.

    A negative that equals the row's target is masked out. With uniform sampling the log-Q correction
    is a constant shift of all logits and cancels.
    """
    pos = (h * E[y]).sum(-1, keepdim=True)
    neg_logits = h @ E[neg].T
    neg_logits = neg_logits.masked_fill(neg[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos, neg_logits], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=h.device))


def _pad_right(seqs: list[list[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift ids by +1, keep the last ``max_len``, right-pad with 0. Returns (array (B, L), lengths)."""
    seqs = [s[-max_len:] for s in seqs]
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    L = max(int(lens.max(initial=0)), 1)
    out = np.zeros((len(seqs), L), dtype=np.int64)
    for r, s in enumerate(seqs):
        out[r, : len(s)] = np.asarray(s, dtype=np.int64) + 1
    return out, lens


def _default_threads() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - non-Linux
        return max(os.cpu_count() or 1, 1)


class SASRecPreranker(Preranker):
    """SASRec next-item model as a pre-ranker. See :class:`SASRecConfig` for the hyper-parameters."""

    def __init__(self, config: SASRecConfig | None = None, **kwargs) -> None:
        if config is None:
            config = SASRecConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        self.n_items = 0
        self.model: SASRecModel | None = None
        #: one dict per evaluation: epoch, loss, val metrics, seconds
        self.history: list[dict] = []
        self.best_epoch: int | None = None

    # ------------------------------------------------------------------ training
    def _set_threads(self) -> None:
        if self.config.device == "cpu":
            torch.set_num_threads(self.config.num_threads or _default_threads())

    def fit(
        self,
        train_sequences: list[list[int]],
        n_items: int,
        valid: list[tuple[list[int], int]] | None = None,
    ) -> None:
        """Train on the sequences (each position predicts the next item); early-stop on ``valid``."""
        cfg = self.config
        _check_ids(train_sequences, n_items)
        self._set_threads()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        device = torch.device(cfg.device)
        self.n_items = int(n_items)
        self.model = SASRecModel(self.n_items, cfg).to(device)
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        seqs = [list(s[-(cfg.max_len + 1) :]) for s in train_sequences if len(s) >= 2]
        if not seqs:
            raise ValueError("no training sequence has 2 or more items")
        lengths = np.fromiter((len(q) for q in seqs), dtype=np.int64, count=len(seqs))
        if valid:
            if cfg.valid_max_users is not None and len(valid) > cfg.valid_max_users:
                pick = np.sort(rng.choice(len(valid), cfg.valid_max_users, replace=False))
                valid = [valid[i] for i in pick]
            v_hist = [list(h) for h, _ in valid]
            v_tgt = [int(t) for _, t in valid]

        best_score, best_state, bad_evals = -math.inf, None, 0
        self.history, self.best_epoch = [], None
        bar = tqdm(range(1, cfg.max_epochs + 1), desc="sasrec", disable=not cfg.progress)
        t0 = time.perf_counter()
        for epoch in bar:
            self.model.train()
            tot_loss, tot_n = 0.0, 0
            for idx in self._batches(lengths, rng):
                batch = [seqs[i] for i in idx]
                arr, lens = _pad_right(batch, cfg.max_len + 1)
                x = torch.from_numpy(arr[:, :-1]).to(device)
                y = torch.from_numpy(arr[:, 1:]).to(device)
                h = self.model(x)
                keep = y > 0
                E = self.model.item_emb.weight[1:]
                if cfg.n_negatives is None or cfg.n_negatives >= self.n_items:
                    loss = full_softmax_loss(h[keep], E, y[keep] - 1)
                else:
                    neg = torch.from_numpy(rng.choice(self.n_items, cfg.n_negatives, replace=False)).to(device)
                    loss = sampled_softmax_loss(h[keep], E, y[keep] - 1, neg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_tok = int(keep.sum())
                tot_loss += loss.item() * n_tok
                tot_n += n_tok
            rec = {"epoch": epoch, "loss": tot_loss / max(tot_n, 1)}
            if valid and (epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs):
                m = full_catalogue_metrics(self, v_hist, v_tgt, ks=(10,), exclude_seen=True)
                rec.update({"val_R@10": m["R@10"], "val_N@10": m["N@10"]})
                rec["seconds"] = time.perf_counter() - t0
                self.history.append(rec)
                logger.info("epoch %d loss %.4f val R@10 %.4f N@10 %.4f (%.0fs)", epoch, rec["loss"],
                            m["R@10"], m["N@10"], rec["seconds"])
                if m["N@10"] > best_score:
                    best_score, bad_evals, self.best_epoch = m["N@10"], 0, epoch
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    bad_evals += 1
                bar.set_postfix(loss=f"{rec['loss']:.3f}", vN10=f"{m['N@10']:.4f}", best=self.best_epoch)
                if bad_evals >= cfg.patience:
                    logger.info("early stop at epoch %d; best epoch %d (val N@10 %.4f)", epoch,
                                self.best_epoch, best_score)
                    break
            else:
                rec["seconds"] = time.perf_counter() - t0
                self.history.append(rec)
                logger.debug("epoch %d loss %.4f", epoch, rec["loss"])
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
        bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        else:
            self.best_epoch = self.history[-1]["epoch"] if self.history else None
        self.model.eval()

    def _batches(self, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch of batches (index arrays), shuffled; with ``length_buckets`` > 1 each group of
        ``length_buckets * batch_size`` shuffled sequences is sorted by length before cutting batches,
        so that little padding is computed, and the batch order is shuffled again."""
        bs, nb = self.config.batch_size, self.config.length_buckets
        order = rng.permutation(len(lengths))
        if nb <= 1:
            return [order[s : s + bs] for s in range(0, len(order), bs)]
        batches = []
        for g in range(0, len(order), bs * nb):
            grp = order[g : g + bs * nb]
            grp = grp[np.argsort(lengths[grp], kind="stable")]
            batches.extend(grp[s : s + bs] for s in range(0, len(grp), bs))
        return [batches[i] for i in rng.permutation(len(batches))]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def score(self, histories: list[list[int]]) -> np.ndarray:
        """Catalogue logits float32 ``(len(histories), n_items)`` from each history's last position.

        An empty history is read as a single padding token (its scores carry no user information).
        """
        if self.model is None:
            raise RuntimeError("fit() or load() first")
        self._set_threads()
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out = np.empty((len(histories), self.n_items), dtype=np.float32)
        bs = self.config.score_batch_size
        for s in range(0, len(histories), bs):
            arr, lens = _pad_right([list(h) for h in histories[s : s + bs]], self.config.max_len)
            h = self.model(torch.from_numpy(arr).to(device))
            last = torch.from_numpy(np.maximum(lens - 1, 0)).to(device)
            h_last = h[torch.arange(len(arr), device=device), last]
            out[s : s + len(arr)] = self.model.logits(h_last).float().cpu().numpy()
        self.model.train(was_training)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path/config.json`` (config, n_items, best epoch, training history) and ``path/model.pt``."""
        if self.model is None:
            raise RuntimeError("nothing to save: fit() first")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"config": self.config.to_dict(), "n_items": self.n_items, "best_epoch": self.best_epoch,
                "history": self.history}
        tmp = path / "config.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, path / "model.pt.tmp")
        os.replace(path / "model.pt.tmp", path / "model.pt")
        os.replace(tmp, path / "config.json")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> "SASRecPreranker":
        """Rebuild a saved model (optionally on another ``device``)."""
        path = Path(path)
        meta = json.loads((path / "config.json").read_text())
        cfg = SASRecConfig.from_dict(meta["config"])
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        obj = cls(cfg)
        obj.n_items = int(meta["n_items"])
        obj.best_epoch = meta.get("best_epoch")
        obj.history = meta.get("history", [])
        obj.model = SASRecModel(obj.n_items, cfg)
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        obj.model.load_state_dict(state)
        obj.model.to(torch.device(cfg.device)).eval()
        return obj
