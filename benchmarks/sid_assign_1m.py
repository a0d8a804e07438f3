"""Benchmark: assign SIDs to 1,000,000 new (synthetic, 384-d) items with a trained tokenizer.

    python benchmarks/sid_assign_1m.py [--run-dir runs/sid-beauty] [--n 1000000] [--threads 2]

Uses the tokenizer and SID table of a finished ``sid`` run (``benchmarks/sid_beauty.py`` makes
one); without one, it trains the default RQ-VAE on 12,101 synthetic vectors first. The new
vectors are synthetic. ``--kind mix`` (default): a random convex mix of two Beauty embeddings
(from the run's cache) plus a little noise, re-normalised, so that they lie where real new items
would. ``--kind gaussian``: isotropic random unit vectors, off the embedding manifold — the
tokenizer piles them into few prefixes, the worst case for collision resolution. Two timings:

- ``encode``: learned codes only (the tokenizer's forward pass)
- ``assign``: the full cold-start path (encode + random last level + collision resolution
  against the existing SIDs) — every SID unique, existing SIDs untouched (both checked)

with the peak RSS of the process, wall and CPU seconds (on a machine shared with other jobs the
CPU time of a ``--threads 1`` run is what it would take alone). Target: under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "sid-beauty"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--kind", choices=["mix", "gaussian"], default="mix")
    ap.add_argument("--noise", type=float, default=0.002, help="per-dimension noise std of --kind mix")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import pandas as pd
    import torch

    from gr2.sid.config import SidConfig
    from gr2.sid.stage import build_sids
    from gr2.sid.tokenizer import assign, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    sid_dir = Path(args.run_dir) / "sid"
    rng = np.random.default_rng(0)
    if (sid_dir / "tokenizer.pt").exists():
        tok, cfg = load_tokenizer(sid_dir / "tokenizer.pt")
        existing = [tuple(int(c) for c in s) for s in pd.read_parquet(sid_dir / "sids.parquet")["codes"]]
        caches = sorted((sid_dir / "cache").glob("emb-*.npy"))
        base = np.load(caches[0]) if caches else None
        print(f"tokenizer: {sid_dir / 'tokenizer.pt'} ({cfg.method}, {len(existing)} existing SIDs)")
    else:
        base = rng.standard_normal((64, 384)).astype(np.float32)
        base = base[rng.integers(0, 64, 12101)] + 0.3 * rng.standard_normal((12101, 384)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        cfg = dataclasses.replace(SidConfig(), progress=False, epochs=10)
        b = build_sids(base, cfg)
        tok, existing = b.tokenizer, b.assignment.sids
        print(f"trained a tokenizer on {len(base)} synthetic vectors")
    if base is None:
        base = rng.standard_normal((12101, 384)).astype(np.float32)
    d = base.shape[1]
    x = np.empty((args.n, d), dtype=np.float32)
    for s in range(0, args.n, 100_000):
        m = min(100_000, args.n - s)
        if args.kind == "gaussian":
            chunk = rng.standard_normal((m, d), dtype=np.float32)
        else:
            w = rng.uniform(0.0, 1.0, size=(m, 1)).astype(np.float32)
            chunk = w * base[rng.integers(0, len(base), m)] + (1 - w) * base[rng.integers(0, len(base), m)]
            chunk += args.noise * rng.standard_normal((m, d), dtype=np.float32)
        x[s:s + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    print(f"{args.n:,} synthetic {d}-d vectors ({args.kind}); RSS so far {rss_mib():.0f} MiB; torch threads {torch.get_num_threads()}")

    t0, c0 = time.perf_counter(), time.process_time()
    codes = tok.encode(x)
    t_encode, c_encode = time.perf_counter() - t0, time.process_time() - c0
    print(f"encode: {t_encode:.1f} s wall, {c_encode:.1f} s CPU ({args.n / t_encode:,.0f} items/s), "
          f"learned codes {codes.shape}")

    frozen = list(existing)
    t0, c0 = time.perf_counter(), time.process_time()
    a = assign(tok, x, cfg, existing=existing)
    t_assign, c_assign = time.perf_counter() - t0, time.process_time() - c0
    assert existing == frozen
    all_sids = set(existing)
    all_sids.update(a.sids)
    assert len(all_sids) == len(existing) + args.n, "duplicate SIDs"
    print(f"assign (encode + random level + resolution vs {len(existing):,} existing): {t_assign:.1f} s wall, "
          f"{c_assign:.1f} s CPU; "
          f"unique: yes; resolution {a.info.as_dict()}")
    print(f"peak RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
