"""The ``sid`` stage: item text → embeddings → tokenizer → unique SIDs, and the ablation grid.

Reads ``data/items.parquet`` (and ``data/interactions.parquet`` when the contrastive loss is on);
writes ``sid/sids.parquet`` (item_id, codes, sid), ``sid/tokenizer.pt``, ``sid/report.json`` and the
embedding cache ``sid/cache/emb-*.npy``. ``run_ablation`` writes ``sid/ablation.json`` and
``sid/ablation.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.reuse import detach
from gr2.runs import RunDir, atomic_write_json, atomic_write_parquet, atomic_write_text
from gr2.sid.config import SidConfig
from gr2.sid.embed import EmbedFn, embed_texts, model_embed_fn, model_id, render_texts
from gr2.sid.render import render_sid
from gr2.sid.report import extra_level_count, level_stats, uniqueness_stats
from gr2.sid.tokenizer import (
    Assignment,
    assign,
    save_tokenizer,
    train_tokenizer,
    validate,
)

log = logging.getLogger(__name__)


# -- inputs -----------------------------------------------------------------------------------
def train_pairs(interactions: pd.DataFrame) -> np.ndarray:
    """Co-interaction pairs of the TRAIN split only: ``(P, 2)`` item ids.

    Per user (sorted by ``position``) the last item is the test target and the second-to-last
    the validation target (leave-one-out); both are dropped, and each remaining consecutive pair
    ``(v_t, v_{t+1})`` with distinct items is a positive.
    """
    df = interactions[["user_id", "item_id", "position"]].sort_values(["user_id", "position"], kind="stable")
    users = df["user_id"].to_numpy()
    items = df["item_id"].to_numpy().astype(np.int64)
    n = len(df)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # index from the end of each user's sequence: 0 = test, 1 = validation
    last = np.r_[users[1:] != users[:-1], True]
    ends = np.flatnonzero(last)
    user_end = np.repeat(ends, np.diff(np.r_[-1, ends]))
    from_end = user_end - np.arange(n)
    train = from_end >= 2
    a, b = np.arange(n - 1), np.arange(1, n)
    ok = train[a] & train[b] & (users[a] == users[b]) & (items[a] != items[b])
    return np.stack([items[a[ok]], items[b[ok]]], axis=1)


def read_items(run: RunDir) -> pd.DataFrame:
    items = pd.read_parquet(run.file("data", "items.parquet"))
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    ids = items["item_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(items))):
        raise ValueError("data/items.parquet: item_id must be dense 0..N-1 (docs/artifacts.md)")
    return items


def item_embeddings(run: RunDir, cfg: SidConfig, items: pd.DataFrame | None = None,
                    embed_fn: EmbedFn | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of the run's items (cached); ``embed_fn`` replaces the model (tests)."""
    items = read_items(run) if items is None else items
    t0 = time.perf_counter()
    texts, n_empty = render_texts(items, cfg.text_template, cfg.category_separator, cfg.max_description_chars)
    if embed_fn is None:
        fn = model_embed_fn(cfg.embedding_model, _embed_device(cfg.device), cfg.embed_batch_size,
                            cfg.normalize_embeddings, progress=cfg.progress)
        ident = model_id(cfg.embedding_model)
    else:
        fn, ident = embed_fn, getattr(embed_fn, "model_id", f"custom:{getattr(embed_fn, '__name__', 'fn')}")
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else run.stage_dir("sid") / "cache"
    with cpu_threads(cfg.num_threads):
        emb, meta = embed_texts(texts, fn, ident, cache, cfg.normalize_embeddings)
    meta.update(model=ident, dim=int(emb.shape[1]), empty_text_items=n_empty,
                seconds=round(time.perf_counter() - t0, 2), example_text=texts[0] if texts else "")
    return emb, meta


def cpu_threads(n: int | None):
    """Context: ``n`` threads for torch and the BLAS/OpenMP pools (``None``: defaults)."""
    from gr2.sid.rqvae import torch_threads

    return torch_threads(n)


def _embed_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# -- the tokenizer on a matrix ------------------------------------------------------------------
@dataclass
class SidBuild:
    """Everything :func:`build_sids` produced."""

    tokenizer: Any
    assignment: Assignment
    report: dict[str, Any] = field(default_factory=dict)


def build_sids(x: np.ndarray, cfg: SidConfig, pairs: np.ndarray | None = None) -> SidBuild:
    """Train the tokenizer on ``x`` (N, d), assign SIDs, resolve collisions, measure everything."""
    validate(cfg, len(x))
    with cpu_threads(cfg.num_threads):
        t0 = time.perf_counter()
        tok = train_tokenizer(x, cfg, pairs)
        t1 = time.perf_counter()
        a = assign(tok, x, cfg)
        t2 = time.perf_counter()
        recon = tok.reconstruction_error(x)
    L, C = cfg.levels, cfg.codebook_size
    first_l = np.array([s[:L] for s in a.sids], dtype=np.int64)
    raw_stats = uniqueness_stats(a.raw)
    report: dict[str, Any] = {
        "method": cfg.method,
        "items": len(x),
        "levels": L,
        "codebook_size": C,
        "learned_levels": L - cfg.random_last_levels,
        "random_last_levels": cfg.random_last_levels,
        "raw": {**raw_stats, "per_level": level_stats(a.raw, C),
                "learned_levels_only": uniqueness_stats(a.raw[:, :L - cfg.random_last_levels])},
        "final": {**uniqueness_stats(a.sids), "per_level": level_stats(first_l, C),
                  "items_with_extra_levels": extra_level_count(a.sids, L)},
        "resolution": a.info.as_dict(),
        "reconstruction": recon,
        "training": _training_summary(tok, cfg),
        "seed": cfg.seed,
        "timings": {"train_s": round(t1 - t0, 2), "assign_and_resolve_s": round(t2 - t1, 2)},
    }
    return SidBuild(tok, a, report)


def _training_summary(tok, cfg: SidConfig) -> dict[str, Any]:
    hist = getattr(tok, "history", [])
    out: dict[str, Any] = {"epochs": cfg.epochs if cfg.method == "rqvae" else 0}
    if hist:
        out["last_epoch"] = hist[-1]
        out["loss_curve"] = [round(h["loss"], 5) for h in hist]
    if hasattr(tok, "dead_code_resets"):
        out["dead_code_resets"] = tok.dead_code_resets
    return out


# -- the stage ----------------------------------------------------------------------------------
def sid_table(sids: Sequence[Sequence[int]]) -> pd.DataFrame:
    """``sids.parquet`` rows: item_id (row index), codes, rendered sid."""
    return pd.DataFrame({
        "item_id": np.arange(len(sids), dtype=np.int64),
        "codes": [list(map(int, s)) for s in sids],
        "sid": [render_sid(s) for s in sids],
    })


def run_sid(run: RunDir, cfg: SidConfig, embed_fn: EmbedFn | None = None) -> dict[str, Any]:
    """Stage 1: write ``sid/sids.parquet``, ``sid/tokenizer.pt`` and ``sid/report.json``."""
    t0 = time.perf_counter()
    items = read_items(run)
    emb, emb_meta = item_embeddings(run, cfg, items, embed_fn)
    pairs = None
    if cfg.contrastive_weight > 0 and cfg.method == "rqvae":
        pairs = train_pairs(pd.read_parquet(run.file("data", "interactions.parquet")))
    build = build_sids(emb, cfg, pairs)
    out = run.stage_dir("sid")
    table = sid_table(build.assignment.sids)
    if table["sid"].duplicated().any():  # cannot happen: resolve_collisions guarantees it
        raise AssertionError("duplicate SIDs after resolution")
    atomic_write_parquet(out / "sids.parquet", table)
    save_tokenizer(build.tokenizer, cfg, out / "tokenizer.pt")
    report = build.report
    report["embedding"] = emb_meta
    report["contrastive_pairs"] = 0 if pairs is None else int(len(pairs))
    report["timings"]["embed_s"] = emb_meta["seconds"]
    report["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    report["environment"] = _environment(cfg)
    report["config"] = dataclasses.asdict(cfg)
    atomic_write_json(out / "report.json", report)
    summary = {
        "items": report["items"],
        "raw_uniqueness": round(report["raw"]["uniqueness"], 4),
        "final_uniqueness": report["final"]["uniqueness"],
        "collisions_resolved": report["raw"]["collisions"],
        "items_with_extra_level": report["resolution"]["extended"],
        "perplexity": [round(s["perplexity"], 1) for s in report["raw"]["per_level"]],
        "seconds": report["timings"]["total_s"],
    }
    log.info("sid: %s", summary)
    return summary


def _environment(cfg: SidConfig) -> dict[str, Any]:
    import torch

    return {"cpu_threads": cfg.num_threads or torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2), "device": cfg.device,
            "python": platform.python_version(), "torch": torch.__version__}


# -- ablation -------------------------------------------------------------------------------
ABLATION_ON = {"random_last_levels": 1, "diversity_weight": 1.0, "contrastive_weight": 1.0}
"""Values a technique takes when switched on in the ablation (``run_ablation(on_values=...)``
overrides them). λ = 1 and w = 1 make those terms visible next to a reconstruction term of ~200
(standardised inputs, sum over 384 dimensions)."""


def _on(name: str, on: bool, values: dict[str, Any] | None = None) -> dict[str, Any]:
    v = {**ABLATION_ON, **(values or {})}
    if name == "ema":
        return {"ema": on}
    if name == "random_last":
        return {"random_last_levels": v["random_last_levels"] if on else 0}
    if name == "diversity":
        return {"diversity_weight": v["diversity_weight"] if on else 0.0}
    if name == "dead_code":
        return {"dead_code_reset": on}
    if name == "contrastive":
        return {"contrastive_weight": v["contrastive_weight"] if on else 0.0}
    if name == "kmeans_init":
        return {"kmeans_init": on}
    raise ValueError(f"unknown technique {name!r}; known: {list(TECHNIQUES) + ['kmeans_init']}")


TECHNIQUES = ("ema", "random_last", "diversity", "dead_code", "contrastive")
PAPER_DELTAS = {"ema": 66.2, "random_last": 28.7, "diversity": 0.6, "dead_code": -4.0, "contrastive": -13.2}
"""The paper's average effect of each technique on uniqueness, in points (method.md §3)."""


def run_ablation(
    run: RunDir,
    cfg: SidConfig,
    seeds: Sequence[int] = (0, 1),
    techniques: Sequence[str] = TECHNIQUES,
    epochs: int | None = 5,
    embed_fn: EmbedFn | None = None,
    baseline: bool = True,
    progress: Callable[[str], None] | None = None,
    on_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Full 2^k on/off grid of ``techniques`` × ``seeds`` (RQ-VAE), raw uniqueness and error.

    ``epochs`` (default 5, a quarter of a real run, to fit a CPU budget; ``None`` keeps
    ``cfg.epochs``) applies to every cell. A technique's *effect* is the mean over all cells and
    seeds with it on minus the mean with it off (the main effect of the factorial design).
    With ``baseline`` the RQ-KMeans tokenizer is measured too (random last level off and on).
    Writes ``sid/ablation.json`` and ``sid/ablation.md``; returns the JSON content.
    """
    detach(run, "sid")  # a sid folder linked from another run gets this run's ablation only
    t_start = time.perf_counter()
    emb, emb_meta = item_embeddings(run, cfg, None, embed_fn)
    pairs = None
    if "contrastive" in techniques or cfg.contrastive_weight > 0:
        pairs = train_pairs(pd.read_parquet(run.file("data", "interactions.parquet")))
    base = dataclasses.replace(cfg, method="rqvae", progress=False,
                               epochs=epochs if epochs is not None else cfg.epochs)
    rows: list[dict[str, Any]] = []
    grid = list(itertools.product([False, True], repeat=len(techniques)))
    for flags in grid:
        changes: dict[str, Any] = {}
        for name, on in zip(techniques, flags):
            changes.update(_on(name, on, on_values))
        for seed in seeds:
            c = dataclasses.replace(base, seed=seed, **changes)
            rows.append(_ablation_cell(emb, c, pairs, dict(zip(techniques, flags)), "rqvae"))
            if progress:
                progress(f"{len(rows)}/{len(grid) * len(seeds)} {rows[-1]['label']} "
                         f"uniq={rows[-1]['raw_uniqueness']:.4f}")
    if baseline:
        for m in (0, _on("random_last", True, on_values)["random_last_levels"]):
            for seed in seeds:
                c = dataclasses.replace(base, method="rqkmeans", seed=seed, random_last_levels=m)
                rows.append(_ablation_cell(emb, c, None, {"random_last": bool(m)}, "rqkmeans"))
    effects = ablation_effects(rows, techniques)
    result = {
        "dataset_items": int(len(emb)),
        "seeds": list(seeds),
        "techniques": list(techniques),
        "epochs": base.epochs,
        "base_config": dataclasses.asdict(base),
        "on_values": {name: _on(name, True, on_values) for name in techniques},
        "rows": rows,
        "effects": effects,
        "embedding": emb_meta,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    out = run.stage_dir("sid")
    atomic_write_json(out / "ablation.json", result)
    atomic_write_text(out / "ablation.md", ablation_markdown(result))
    return result


def ablation_effects(rows: list[dict[str, Any]], techniques: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Main effect of each technique over the RQ-VAE cells: mean(on) − mean(off).

    ``uniqueness_pts`` averages over the whole grid (as the paper's "average effect");
    ``uniqueness_pts_learned`` only over cells with the random last level off, where uniqueness
    is not already saturated by the random codes (for ``random_last`` itself it equals the former).
    """
    rq = [r for r in rows if r["method"] == "rqvae"]

    def delta(rs: list[dict[str, Any]], name: str, key: str) -> float | None:
        on = [r[key] for r in rs if r["switches"][name]]
        off = [r[key] for r in rs if not r["switches"][name]]
        return float(np.mean(on) - np.mean(off)) if on and off else None

    learned = [r for r in rq if not r["switches"].get("random_last", False)]
    effects = {}
    for name in techniques:
        d_learned = delta(learned if name != "random_last" else rq, name, "raw_uniqueness")
        effects[name] = {
            "uniqueness_pts": 100 * (delta(rq, name, "raw_uniqueness") or 0.0),
            "uniqueness_pts_learned": None if d_learned is None else 100 * d_learned,
            "distinct_ratio_pts": 100 * (delta(rq, name, "distinct_ratio") or 0.0),
            "recon_relative": delta(rq, name, "recon_relative") or 0.0,
            "paper_uniqueness_pts": PAPER_DELTAS.get(name),
        }
    return effects


def _ablation_cell(x: np.ndarray, cfg: SidConfig, pairs, switches: dict[str, bool], method: str) -> dict[str, Any]:
    with cpu_threads(cfg.num_threads):
        return _ablation_cell_inner(x, cfg, pairs, switches, method)


def _ablation_cell_inner(x: np.ndarray, cfg: SidConfig, pairs, switches: dict[str, bool], method: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    tok = train_tokenizer(x, cfg, pairs if cfg.contrastive_weight > 0 else None)
    learned = tok.encode(x)
    if cfg.random_last_levels:
        from gr2.sid.uniqueness import draw_random_levels

        raw = np.concatenate([learned, draw_random_levels(learned, cfg.random_last_levels,
                                                          cfg.codebook_size, cfg.seed)], axis=1)
    else:
        raw = learned
    stats = uniqueness_stats(raw)
    per_level = level_stats(raw, cfg.codebook_size)
    recon = tok.reconstruction_error(x)
    label = "+".join(k for k, v in switches.items() if v) or "none"
    return {
        "method": method,
        "label": label,
        "switches": switches,
        "seed": cfg.seed,
        "raw_uniqueness": stats["uniqueness"],
        "distinct_ratio": stats["distinct_ratio"],
        "collisions": stats["collisions"],
        "largest_bucket": stats["largest_bucket"],
        "codes_used": [s["codes_used"] for s in per_level],
        "perplexity": [round(s["perplexity"], 1) for s in per_level],
        "recon_mse": recon["mse"],
        "recon_relative": recon["relative"],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def ablation_markdown(result: dict[str, Any]) -> str:
    """The ablation as Markdown: one row per configuration (mean over seeds), then the effects."""
    techs = result["techniques"]
    short = {"ema": "EMA", "random_last": "rand-last", "diversity": "div", "dead_code": "dead-code",
             "contrastive": "contr."}
    lines = [
        f"RQ-VAE, {result['dataset_items']} items, {result['epochs']} epochs, seeds {result['seeds']}; "
        "raw = before collision resolution (final uniqueness is always 1.0).",
        "",
        "| method | " + " | ".join(short.get(t, t) for t in techs)
        + " | raw uniqueness | distinct/N | collisions | rel. recon error | perplexity per level | s |",
        "|---|" + "---|" * len(techs) + "---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in result["rows"]:
        key = (r["method"], tuple(r["switches"].get(t, False) for t in techs))
        groups.setdefault(key, []).append(r)
    for (method, flags), rs in groups.items():
        u = [r["raw_uniqueness"] for r in rs]
        mark = " | ".join(("on" if f else "·") if (method == "rqvae" or t == "random_last") else "–"
                          for t, f in zip(techs, flags))
        perp = np.mean([r["perplexity"] for r in rs], axis=0)
        lines.append(
            f"| {method} | {mark} | {np.mean(u):.4f} ± {np.std(u):.4f} | {np.mean([r['distinct_ratio'] for r in rs]):.4f} "
            f"| {np.mean([r['collisions'] for r in rs]):.0f} | {np.mean([r['recon_relative'] for r in rs]):.3f} "
            f"| {' / '.join(f'{p:.0f}' for p in perp)} | {np.mean([r['seconds'] for r in rs]):.1f} |")
    lines += ["", "Average effect of each technique (mean with it on − mean with it off, over the whole "
              "RQ-VAE grid and all seeds):", "",
              "| technique | Δ raw uniqueness (pts) | paper Δ (pts) | Δ with random last off (pts) "
              "| Δ distinct/N (pts) | Δ rel. recon error |",
              "|---|---|---|---|---|---|"]
    for t in techs:
        e = result["effects"][t]
        paper = "—" if e["paper_uniqueness_pts"] is None else f"{e['paper_uniqueness_pts']:+.1f}"
        cond = "—" if e.get("uniqueness_pts_learned") is None else f"{e['uniqueness_pts_learned']:+.1f}"
        lines.append(f"| {t} | {e['uniqueness_pts']:+.1f} | {paper} | {cond} | {e['distinct_ratio_pts']:+.1f} "
                     f"| {e['recon_relative']:+.3f} |")
    lines.append("")
    return "\n".join(lines)
