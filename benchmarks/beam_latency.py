"""Per-user latency of trie-constrained beam search (beam 10) with SmolLM2-135M + the SID vocabulary.

Untrained SID rows are fine for latency. SIDs are random distinct 4-level codes (codebook 256) for the
Beauty catalogue unless a ``sids.parquet`` is given; histories are the first users' training sequences.

    python benchmarks/beam_latency.py [--run runs/sid-beauty] [--sids PATH] [--users 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/sid-beauty")
    ap.add_argument("--sids", default=None, help="sids.parquet (default: random SIDs)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--batch-sizes", default="1,10")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gr2.llm.decoding import SidTrie, constrained_beam_search, encode_prompts
    from gr2.llm.registry import load
    from gr2.llm.retrieval import codes_table, default_prompt_fn
    from gr2.llm.vocab import add_sid_tokens

    inter = pd.read_parquet(Path(args.run) / "data" / "interactions.parquet")
    n_items = int(inter["item_id"].max()) + 1
    if args.sids:
        codes = codes_table(pd.read_parquet(args.sids))
    else:
        rng = np.random.default_rng(0)
        keys = rng.choice(256 ** 4, size=n_items, replace=False)
        codes = [tuple(int(k) // 256 ** (3 - lv) % 256 for lv in range(4)) for k in keys]
    seqs = inter.groupby("user_id")["item_id"].apply(list)
    histories = [s[:-2] for s in seqs.iloc[: args.users]]  # training part (leave-one-out)

    t0 = time.perf_counter()
    model, tok = load(args.model, device=args.device)
    add_sid_tokens(model, tok, levels=max(len(c) for c in codes), codebook_size=256)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    trie = SidTrie.from_codes(codes, tok)
    t_trie = time.perf_counter() - t0
    prompt_fn = default_prompt_fn()
    prompts = [prompt_fn(h, codes) for h in histories]
    lens = [len(x) for x in encode_prompts(tok, prompts, trie.begin_id)]

    constrained_beam_search(model, tok, prompts[:2], trie, num_beams=args.beams, batch_size=2)  # warm-up
    out = {"model": args.model, "items": n_items, "users": len(prompts), "beams": args.beams,
           "threads": args.threads, "device": str(next(model.parameters()).device),
           "prompt_tokens_mean": round(float(np.mean(lens)), 1), "load_s": round(t_load, 2),
           "trie_build_s": round(t_trie, 2), "ms_per_user": {}}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        t0 = time.perf_counter()
        res = constrained_beam_search(model, tok, prompts, trie, num_beams=args.beams, batch_size=bs,
                                      exclude=histories)
        dt = time.perf_counter() - t0
        assert all(len(r) == args.beams for r in res)
        out["ms_per_user"][f"batch_{bs}"] = round(1000 * dt / len(prompts), 1)
        print(f"batch {bs}: {1000 * dt / len(prompts):.1f} ms/user", flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
