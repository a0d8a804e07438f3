"""Load test of the HTTP re-ranker: N concurrent clients for T seconds against a local server.

Starts ``python -m gr2.serve.cli`` (``gr2 serve``) on 127.0.0.1 (loopback only) for the run directory, then for
every mode and client count runs closed-loop clients (each sends its next request when the previous
one is answered) for ``--duration`` seconds, and reports throughput, p50/p95/p99 client-side
latency, errors (non-200 answers and transport failures), fallbacks and the mean model batch size
(from ``/metrics``). It also prints the compute floor of one request: the forward FLOPs of the
prompt (last position's logits only) divided by the matmul throughput measured here with the same
number of threads, for the whole prompt and for the part left after the cached system prefix.

``--micro`` times the direct-mode computation in-process, before and after each optimisation, on
the same requests: K separate forward passes (naive) → one pass over the prompt and the candidate
trie (tree attention) → plus the prefix KV cache; and the prompt's forward with every position's
logits vs the last one's.

``--make-run DIR`` builds a run directory for the benchmark from a registry model (default
``smollm2-135m``) with the SID vocabulary added and random distinct 4-level SIDs (untrained SID rows:
fine for latency), for the items of ``--items`` (a ``data/items.parquet``).

    python benchmarks/load_test.py --make-run /tmp/gr2-bench --items runs/beauty-medium/data/items.parquet
    python benchmarks/load_test.py --run-dir /tmp/gr2-bench --micro
    python benchmarks/load_test.py --run-dir /tmp/gr2-bench --clients 1 4 16 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_DURATION_S = 120.0
MAX_CLIENTS = 64


# -- run directory ----------------------------------------------------------------------------------
def make_run(out: Path, items: Path, model: str, sids: Path | None) -> None:
    from gr2.llm.registry import load
    from gr2.llm.vocab import add_sid_tokens
    from gr2.prompts.sids import render_sid

    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "sid").mkdir(exist_ok=True)
    shutil.copyfile(items, out / "data" / "items.parquet")
    n = len(pd.read_parquet(items, columns=["item_id"]))
    if sids is not None:
        shutil.copyfile(sids, out / "sid" / "sids.parquet")
    else:
        keys = np.random.default_rng(0).choice(256 ** 4, size=n, replace=False)
        codes = [[int(k) // 256 ** (3 - lv) % 256 for lv in range(4)] for k in keys]
        pd.DataFrame({"item_id": range(n), "codes": codes, "sid": [render_sid(c) for c in codes]}).to_parquet(
            out / "sid" / "sids.parquet", index=False)
    levels = max(len(c) for c in pd.read_parquet(out / "sid" / "sids.parquet")["codes"])
    m, tok = load(model)
    add_sid_tokens(m, tok, levels=levels, codebook_size=256)
    m.save_pretrained(out / "midtrain" / "model")
    tok.save_pretrained(out / "midtrain" / "model")
    print(f"run directory {out}: {n} items, model {model} + SID tokens")


# -- requests -------------------------------------------------------------------------------------
def make_bodies(run_dir: Path, n: int, k: int, history: int, seed: int = 0) -> list[dict[str, Any]]:
    """Random requests over the catalogue: ``history`` items and K distinct candidates each."""
    ids = pd.read_parquet(run_dir / "data" / "items.parquet", columns=["raw_id"])["raw_id"].astype(str).tolist()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pick = rng.choice(len(ids), size=history + k, replace=False)
        out.append({"history": [ids[i] for i in pick[:history]], "candidates": [ids[i] for i in pick[history:]]})
    return out


# -- compute floor --------------------------------------------------------------------------------
def forward_flops(cfg: dict[str, Any], tokens: int, context: int = 0) -> float:
    """FLOPs of a causal forward over ``tokens`` new tokens after ``context`` cached ones, projecting
    the last position only onto the vocabulary (2 FLOPs per multiply-add)."""
    d, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    h = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or d // h
    kv = cfg.get("num_key_value_heads") or h
    linear = 2 * tokens * (d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f)
    pairs = tokens * context + tokens * (tokens + 1) / 2  # (query, key) pairs seen by causal attention
    attention = 2 * 2 * h * hd * pairs
    return n * (linear + attention) + 2 * d * cfg["vocab_size"]


def matmul_flops_per_s(cfg: dict[str, Any], tokens: int, threads: int, seconds: float = 2.0) -> float:
    """Best measured float32 GEMM rate on the model's own MLP shapes for a ``tokens``-row input."""
    import torch

    torch.set_num_threads(threads)
    d, f = cfg["hidden_size"], cfg["intermediate_size"]
    x, w1, w2 = torch.randn(tokens, d), torch.randn(d, f), torch.randn(f, d)
    y = x @ w1
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(x, w1)
            torch.mm(y, w2)
        best = max(best, 5 * 2 * (2 * tokens * d * f) / (time.perf_counter() - t0))
    return best


# -- micro-benchmark (in-process) -------------------------------------------------------------------
def micro(run_dir: Path, bodies: list[dict[str, Any]], threads: int, reps: int) -> dict[str, float]:
    import torch

    from gr2.llm.scoring import score_direct
    from gr2.serve.reranker import Reranker, ServeConfig

    torch.set_num_threads(threads)
    rr = Reranker.load(run_dir, config=ServeConfig(prefix_cache=True))
    model = rr.model
    inputs = [rr.score_input(b["history"], b["candidates"]) for b in bodies[:reps]]

    def naive(x: Any) -> None:  # before: one forward per candidate, every position's logits
        for p in x.paths:
            model(input_ids=torch.tensor([x.ids + p]))

    def prompt_forward(x: Any, keep: int) -> None:
        model(input_ids=torch.tensor([x.ids]), logits_to_keep=keep)

    variants = {
        "naive: K forwards of prompt+SID": naive,
        "prompt forward, all logits": lambda x: prompt_forward(x, 0),
        "prompt forward, last logits": lambda x: prompt_forward(x, 1),
        "one pass (trie), no prefix cache": lambda x: score_direct(model, [x], None),
        "one pass (trie) + prefix cache": lambda x: score_direct(model, [x], rr.prefixes["direct"]),
    }
    out: dict[str, float] = {}
    with torch.no_grad():
        model(input_ids=torch.tensor([inputs[0].ids[:64]]))  # warm-up
        for name, fn in variants.items():
            times = []
            for x in inputs[:1] if name.startswith("naive") else inputs:  # naive costs K forwards: once
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
            print(f"{name}: {out[name]:.3f} s", flush=True)
        for bs in (4, 8):  # dynamic batching: per-request time in one batch of bs (batch 1: above)
            batch = (inputs * bs)[:bs]
            t0 = time.perf_counter()
            score_direct(model, batch, rr.prefixes["direct"])
            out[f"one pass + cache, batch {bs} (per request)"] = (time.perf_counter() - t0) / bs
            print(f"batch {bs}: {out[f'one pass + cache, batch {bs} (per request)']:.3f} s per request", flush=True)
    out["prompt tokens (median)"] = statistics.median(len(x.ids) for x in inputs)
    out["prefix tokens"] = len(rr.prefixes["direct"])
    rr.close()
    return out


# -- server and clients ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, extra: list[str]) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "gr2.serve.cli", "--run-dir", str(run_dir), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd)
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not come up in 300 s")


def batch_counters(url: str, mode: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(name: str) -> float:
        m = re.search(rf'^{name}{{mode="{mode}"}} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    return value("gr2_batches_total"), value("gr2_batched_requests_total")


async def load(url: str, bodies: list[dict[str, Any]], mode: str, clients: int, duration: float,
               timeout_ms: int) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    codes: dict[str, int] = {}
    fallbacks = repaired = 0
    prompt_tokens: list[int] = []
    t_stop = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal fallbacks, repaired
        j = i
        while time.monotonic() < t_stop:
            body = {**bodies[j % len(bodies)], "mode": mode, "timeout_ms": timeout_ms}
            j += clients
            t0 = time.monotonic()
            try:
                r = await http.post(f"{url}/v1/rerank", json=body)
                key = str(r.status_code)
                if r.status_code == 200:
                    res = r.json()
                    fallbacks += res["fallback"]
                    repaired += res["repaired"]
                    prompt_tokens.append(res["prompt_tokens"])
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            lat.append(time.monotonic() - t0)
            codes[key] = codes.get(key, 0) + 1

    b0 = batch_counters(url, mode)
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout_ms / 1000 + 30, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    wall = time.monotonic() - t0
    b1 = batch_counters(url, mode)
    q = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    batches = b1[0] - b0[0]
    return {"mode": mode, "clients": clients, "requests": len(lat), "wall_s": round(wall, 2),
            "throughput_rps": round(codes.get("200", 0) / wall, 3),
            "p50_ms": round(q[0] * 1000, 1), "p95_ms": round(q[1] * 1000, 1), "p99_ms": round(q[2] * 1000, 1),
            "errors": sum(v for k, v in codes.items() if k != "200"), "status": codes,
            "fallbacks": fallbacks, "repaired": repaired,
            "mean_batch": round((b1[1] - b0[1]) / batches, 2) if batches else None,
            "prompt_tokens_median": statistics.median(prompt_tokens) if prompt_tokens else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path)
    ap.add_argument("--make-run", type=Path, metavar="DIR", help="build a benchmark run directory and exit")
    ap.add_argument("--items", type=Path, help="--make-run: data/items.parquet to serve")
    ap.add_argument("--sids", type=Path, help="--make-run: sids.parquet (default: random SIDs)")
    ap.add_argument("--model", default="smollm2-135m", help="--make-run: registry model")
    ap.add_argument("--micro", action="store_true", help="time the direct-mode compute in-process and exit")
    ap.add_argument("--modes", nargs="+", default=["direct", "reasoning"], choices=["direct", "reasoning"])
    ap.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per (mode, clients) cell")
    ap.add_argument("--k", type=int, default=10, help="candidates per request")
    ap.add_argument("--history", type=int, default=20, help="history items per request")
    ap.add_argument("--timeout-ms", type=int, default=60_000, help="request deadline")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (server and floor)")
    ap.add_argument("--server-args", default="", help="extra gr2 serve arguments, e.g. '--max-batch 1'")
    ap.add_argument("--reps", type=int, default=8, help="--micro: requests timed per variant")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if args.make_run:
        if not args.items:
            ap.error("--make-run needs --items")
        make_run(args.make_run, args.items, args.model, args.sids)
        return
    if not args.run_dir:
        ap.error("--run-dir is required")
    if args.duration > MAX_DURATION_S or max(args.clients) > MAX_CLIENTS:
        ap.error(f"bounded: --duration <= {MAX_DURATION_S:g} s and --clients <= {MAX_CLIENTS}")
    from gr2.serve.reranker import find_model

    cfg = json.loads((find_model(args.run_dir)[0] / "config.json").read_text())
    bodies = make_bodies(args.run_dir, 200, args.k, args.history)
    result: dict[str, Any] = {"k": args.k, "history": args.history, "threads": args.threads,
                              "load_avg_before": os.getloadavg()}

    if args.micro:
        result["micro_s"] = micro(args.run_dir, bodies, args.threads, args.reps)
        tokens = int(result["micro_s"]["prompt tokens (median)"])
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(args.run_dir, port, ["--threads", str(args.threads), *args.server_args.split()])
        try:
            cells = []
            for mode in args.modes:
                for c in args.clients:
                    cell = asyncio.run(load(url, bodies, mode, c, args.duration, args.timeout_ms))
                    print(json.dumps(cell), flush=True)
                    cells.append(cell)
            result["cells"] = cells
            prefix = int(__import__("httpx").get(f"{url}/healthz").json()["prefix_tokens"].get("direct", 0))
        finally:
            proc.terminate()
            proc.wait(30)
        tokens = int(next((c["prompt_tokens_median"] for c in cells if c["mode"] == "direct"
                           and c["prompt_tokens_median"]), 0) or 0)
        result["prefix_tokens"] = prefix

    if tokens:
        rate = matmul_flops_per_s(cfg, tokens, args.threads)
        prefix = int(result.get("prefix_tokens", result.get("micro_s", {}).get("prefix tokens", 0)))
        full, suffix = forward_flops(cfg, tokens), forward_flops(cfg, tokens - prefix, prefix)
        result["floor"] = {"prompt_tokens": tokens, "prefix_tokens": prefix, "matmul_gflops": round(rate / 1e9, 1),
                           "prompt_gflop": round(full / 1e9, 2), "floor_ms": round(full / rate * 1000, 1),
                           "suffix_gflop": round(suffix / 1e9, 2), "floor_after_prefix_ms": round(suffix / rate * 1000, 1)}
    result["load_avg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
