"""Each paper technique's switch changes the RQ-VAE as it should (tiny synthetic data)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gr2.sid.report import level_stats, uniqueness_stats
from gr2.sid.rqvae import RQVAE, Arch, info_nce, train_rqvae, train_step_losses
from gr2.sid.stage import build_sids, train_pairs


def _model(ema: bool) -> RQVAE:
    torch.manual_seed(0)
    return RQVAE(Arch(32, [32], 8, 2, 16, ema))


def test_ema_updates_codebook_without_gradient(vectors, tiny_cfg):
    cfg = tiny_cfg(ema=True)
    model = _model(ema=True)
    vq = model.quantizer
    assert "codebooks" not in dict(model.named_parameters())  # a buffer: no optimiser touches it
    before = vq.codebooks.clone()
    out = train_step_losses(model, torch.as_tensor(vectors[:64]), cfg)
    out.loss.backward()
    assert vq.codebooks.grad is None
    vq.ema_update(0, out.residuals[0], out.codes[0])
    changed = (vq.codebooks[0] - before[0]).abs().sum(1) > 0
    used = torch.unique(out.codes[0])
    assert changed[used].all()  # every used code moved towards its residuals
    assert torch.equal(vq.codebooks[1], before[1])  # level 1 not updated by level 0's call


def test_without_ema_the_codebook_is_learned_by_gradient(vectors, tiny_cfg):
    model = _model(ema=False)
    assert "quantizer.codebooks" in dict(model.named_parameters())
    out = train_step_losses(model, torch.as_tensor(vectors[:64]), tiny_cfg(ema=False))
    out.loss.backward()
    assert model.quantizer.codebooks.grad is not None
    assert model.quantizer.codebooks.grad.abs().sum() > 0


def test_ema_training_moves_codebook_over_epochs(vectors, tiny_cfg):
    a = train_rqvae(vectors, tiny_cfg(ema=True, epochs=0))
    b = train_rqvae(vectors, tiny_cfg(ema=True, epochs=2))
    assert not torch.allclose(a.model.quantizer.codebooks, b.model.quantizer.codebooks)


def test_kmeans_init_places_codes_at_the_data(vectors, tiny_cfg):
    with_km = train_rqvae(vectors, tiny_cfg(kmeans_init=True, epochs=0))
    without = train_rqvae(vectors, tiny_cfg(kmeans_init=False, epochs=0))
    # k-means on 300 points with 16 clusters: every code is some item's nearest code, and is
    # the mean of the latents assigned to it
    codes = with_km.encode(vectors)[:, 0]
    assert len(np.unique(codes)) == 16
    with torch.no_grad():
        z = with_km.model.encoder(with_km.model.scale(torch.as_tensor(vectors))).numpy()
    cb = with_km.model.quantizer.codebooks[0].numpy()
    spacing = np.median(np.linalg.norm(cb[:, None] - cb[None], axis=2)[~np.eye(16, dtype=bool)])
    for c in range(16):
        assert np.linalg.norm(cb[c] - z[codes == c].mean(0)) < 0.1 * spacing
    # uniform-noise initialisation: the codes sit near the origin, far from most latents
    assert len(np.unique(without.encode(vectors)[:, 0])) < 16


def test_random_last_level_is_not_learned_and_unique_within_prefix(vectors, tiny_cfg):
    on = build_sids(vectors, tiny_cfg(random_last_levels=1))
    off = build_sids(vectors, tiny_cfg(random_last_levels=0))
    assert on.tokenizer.learned_levels == 2 and on.tokenizer.model.quantizer.codebooks.shape[0] == 2
    assert off.tokenizer.learned_levels == 3
    raw = on.assignment.raw
    # within each prefix bucket that fits in C codes, the drawn codes are all different
    buckets = pd.DataFrame({"p": [tuple(r) for r in raw[:, :2].tolist()], "c": raw[:, 2]})
    for _, g in buckets.groupby("p"):
        if len(g) <= 16:
            assert g["c"].is_unique
    assert on.report["raw"]["uniqueness"] >= off.report["raw"]["uniqueness"]
    assert on.report["final"]["uniqueness"] == off.report["final"]["uniqueness"] == 1.0


def test_random_last_levels_bounds(tiny_cfg, make_vectors):
    x = make_vectors(50)
    with pytest.raises(ValueError, match="random_last_levels"):
        build_sids(x, tiny_cfg(random_last_levels=3))


def test_dead_code_reset_revives_unused_codes(vectors, tiny_cfg):
    # Without k-means init the codes start at the origin and most are never used (collapse).
    base = dict(kmeans_init=False, ema=True, epochs=4, dead_code_threshold=3)
    off = train_rqvae(vectors, tiny_cfg(dead_code_reset=False, **base))
    on = train_rqvae(vectors, tiny_cfg(dead_code_reset=True, **base))
    used_off = [s["codes_used"] for s in level_stats(off.encode(vectors), 16)]
    used_on = [s["codes_used"] for s in level_stats(on.encode(vectors), 16)]
    assert on.dead_code_resets > 0 and off.dead_code_resets == 0
    assert sum(used_on) > sum(used_off)


def test_diversity_loss_is_computed_and_differentiable(vectors, tiny_cfg):
    model = _model(ema=True)
    cfg = tiny_cfg(diversity_weight=1.0)
    out = train_step_losses(model, torch.as_tensor(vectors[:64]), cfg)
    assert out.parts["diversity"] >= 2.0 - 1e-5  # Σ_l C Σ_j p² ≥ 1 per level, 2 levels
    model.zero_grad()
    out.loss.backward()
    grad_on = model.encoder[0].weight.grad.clone()
    model.zero_grad()
    train_step_losses(model, torch.as_tensor(vectors[:64]), dataclasses.replace(cfg, diversity_weight=0.0)).loss.backward()
    assert not torch.allclose(grad_on, model.encoder[0].weight.grad)  # the term reaches the encoder
    off = train_step_losses(model, torch.as_tensor(vectors[:64]), dataclasses.replace(cfg, diversity_weight=0.0))
    assert off.parts["diversity"] == 0.0


def test_diversity_loss_raises_code_usage(vectors, tiny_cfg):
    base = dict(kmeans_init=False, ema=False, epochs=6, random_last_levels=0)
    off = train_rqvae(vectors, tiny_cfg(diversity_weight=0.0, **base))
    on = train_rqvae(vectors, tiny_cfg(diversity_weight=1.0, **base))
    ppl_off = sum(s["perplexity"] for s in level_stats(off.encode(vectors), 16))
    ppl_on = sum(s["perplexity"] for s in level_stats(on.encode(vectors), 16))
    assert ppl_on > ppl_off


def test_train_pairs_come_from_the_train_split_only():
    inter = pd.DataFrame({
        "user_id": [0] * 5 + [1] * 3 + [2] * 4,
        "item_id": [10, 11, 12, 13, 14, 20, 21, 22, 30, 30, 31, 32],
        "position": [0, 1, 2, 3, 4, 2, 0, 1, 0, 1, 2, 3],  # user 1 out of order on disk
    })
    pairs = train_pairs(inter).tolist()
    # user 0: train = 10, 11, 12 (13 val, 14 test); user 1: train = 21 only; user 2: 30, 30 (same item)
    assert pairs == [[10, 11], [11, 12]]
    assert not {13, 14, 20, 22, 31, 32} & {i for p in pairs for i in p}


def test_contrastive_loss_uses_pairs_and_pulls_them_together(vectors, tiny_cfg):
    za = torch.randn(16, 8)
    assert info_nce(za, za + 0.01 * torch.randn(16, 8), 0.1) < info_nce(za, torch.randn(16, 8), 0.1)
    pairs = np.array([[i, i + 1] for i in range(0, 200, 2)])
    tok = train_rqvae(vectors, tiny_cfg(contrastive_weight=0.5, epochs=2), pairs)
    assert "contrastive" in tok.history[-1]
    tok_off = train_rqvae(vectors, tiny_cfg(contrastive_weight=0.0, epochs=2), pairs)
    assert "contrastive" not in tok_off.history[-1]

    def pair_cos(t):
        with torch.no_grad():
            z = torch.nn.functional.normalize(t.model.encoder(t.model.scale(torch.as_tensor(vectors))), dim=1)
        return float((z[pairs[:, 0]] * z[pairs[:, 1]]).sum(1).mean())

    assert pair_cos(tok) > pair_cos(tok_off)


def test_training_is_deterministic(vectors, tiny_cfg):
    cfg = tiny_cfg(dead_code_reset=True, diversity_weight=0.1, contrastive_weight=0.1)
    pairs = np.array([[i, i + 1] for i in range(0, 200, 2)])
    a = build_sids(vectors, cfg, pairs)
    b = build_sids(vectors, cfg, pairs)
    assert a.assignment.sids == b.assignment.sids
    assert np.array_equal(a.assignment.raw, b.assignment.raw)
    c = build_sids(vectors, dataclasses.replace(cfg, seed=1), pairs)
    assert c.assignment.sids != a.assignment.sids


def test_rqkmeans_baseline(vectors, tiny_cfg):
    b = build_sids(vectors, tiny_cfg(method="rqkmeans", random_last_levels=0))
    assert b.report["final"]["uniqueness"] == 1.0
    assert b.report["raw"]["per_level"][0]["codes_used"] == 16
    assert 0 < b.report["reconstruction"]["relative"] < 1
    assert uniqueness_stats(b.assignment.sids)["collisions"] == 0


def test_constant_dimension_does_not_make_codes_fragile(vectors, tiny_cfg):
    x = vectors.copy()
    x[:, 3] = 0.25  # a dimension with zero variance, as MiniLM has on Beauty
    tok = train_rqvae(x, tiny_cfg(epochs=2))
    rng = np.random.default_rng(0)
    nudged = x + 1e-4 * rng.standard_normal(x.shape).astype(np.float32)
    assert (tok.encode(nudged) == tok.encode(x)).all(1).mean() > 0.9
