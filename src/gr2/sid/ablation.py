"""The SID technique ablation: a 2^k on/off grid of the paper's techniques × seeds (RQ-VAE, plus
RQ-KMeans with the random last level off and on), on the ``sid`` stage's embeddings.

``run_ablation`` writes ``sid/ablation.json`` and ``sid/ablation.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gr2.reuse import detach
from gr2.runs import RunDir, atomic_write_json, atomic_write_text
from gr2.sid.config import SidConfig
from gr2.sid.embed import EmbedFn
from gr2.sid.report import level_stats, uniqueness_stats
from gr2.sid.stage import cpu_threads, item_embeddings, train_pairs
from gr2.sid.tokenizer import train_tokenizer

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
"""The paper's average effect of each technique on uniqueness, in points (docs/method.md §3)."""


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
