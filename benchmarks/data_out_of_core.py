"""The out-of-core data stage (issue #22) on a synthetic log larger than memory.

Writes a generic-format folder: ``interactions.parquet/`` (a folder of Parquet parts: ``user_id``,
``item_id``, ``timestamp``, all int64) and ``items.parquet``, then runs
``gr2 run --stages data --set data.engine=duckdb`` on it in a child process and records its wall time
and peak memory (RSS of the child and all its descendants, sampled every 0.2 s; as a cross-check the
kernel's ``ru_maxrss`` of that run alone: its largest process, from ``wait4`` on the child, so the
engine run second does not report the first one's peak). ``--pandas`` also runs the in-memory engine on
the same folder (small sizes only) and checks that both wrote the same files, byte for byte.

The log: item popularity is a power law (Zipf, exponent ``--zipf`` over a shuffled catalogue, so the
rare tail falls to the k-core), history lengths are log-normal (most users short, a few very long),
each user's events are a random walk in time (gaps of ~a day; 3% of events share their second with
the one before: ties broken by file order), users are spread over the parts, and every part is
shuffled, as logs exported per time window are.

    .venv/bin/python benchmarks/data_out_of_core.py --rows 100000000 --memory-limit 4GB --threads 2

The data (and the run) go under ``--dir`` (default ``runs/bench/ooc``, git-ignored) and are deleted
at the end unless ``--keep``. Check free disk first (``df -h``): 100M rows need about 1.5 GB of
input, 1.5-2 GB of output and DuckDB's scratch database and spill files (a few GB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def generate(folder: Path, rows: int, items: int, parts: int, zipf: float, seed: int) -> dict:
    """Write the synthetic log; returns what was written."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    lengths: list[np.ndarray] = []
    total = 0
    while total < rows:  # log-normal history lengths (mean ~30), drawn until the log is long enough
        chunk = np.clip(np.exp(rng.normal(2.8, 1.1, size=1_000_000)).astype(np.int64) + 1, 1, 20_000)
        lengths.append(chunk)
        total += int(chunk.sum())
    length = np.concatenate(lengths)
    cut = int(np.searchsorted(np.cumsum(length), rows)) + 1
    length = length[:cut]
    length[-1] -= int(length.sum()) - rows
    length = length[length > 0]
    n_users = len(length)
    weights = 1.0 / np.arange(1, items + 1) ** zipf
    cdf = np.cumsum(weights / weights.sum())
    rank_to_item = rng.permutation(items)  # the popular items are not the first ids
    item_ids = (np.arange(items, dtype=np.int64) * 7919) % 1_000_000_007  # sparse raw ids
    user_ids = (rng.permutation(n_users).astype(np.int64) * 2654435761) % 10**12  # unique: coprime to 10^12

    inter = folder / "interactions.parquet"
    inter.mkdir(parents=True)
    bounds = np.linspace(0, n_users, parts + 1).astype(np.int64)
    for p in range(parts):
        lo, hi = bounds[p], bounds[p + 1]
        n_of = length[lo:hi]
        n = int(n_of.sum())
        user = np.repeat(np.arange(lo, hi), n_of)
        first = np.zeros(n, bool)
        first[np.concatenate([[0], np.cumsum(n_of)[:-1]])] = True
        item = rank_to_item[np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)]
        gap = rng.exponential(86_400, size=n).astype(np.int64) + 1
        tie = rng.random(n) < 0.03
        tie[1:] &= ~tie[:-1]  # ties of two events at most ...
        tie &= ~first
        same = np.zeros(n, bool)
        same[1:] = item[1:] == item[:-1]
        gap[tie & ~same] = 0  # ... and never the same item twice in one second (a duplicate row)
        gap[first] = 0
        walk = np.cumsum(gap)
        start = rng.integers(1_600_000_000, 1_660_000_000, size=hi - lo)
        timestamp = start[user - lo] + walk - walk[np.flatnonzero(first)][user - lo]
        order = rng.permutation(n)
        table = pa.table({"user_id": user_ids[user[order]], "item_id": item_ids[item[order]],
                          "timestamp": timestamp[order]})
        pq.write_table(table, inter / f"part-{p:05d}.parquet")
    (inter / "_SUCCESS").write_text("")
    pq.write_table(pa.table({
        "item_id": item_ids,
        "title": pa.array([f"Item {i}" for i in range(items)]),
        "categories": pa.array([["Shop", f"Department {i % 40}", f"Aisle {i % 700}"] for i in range(items)]),
    }), folder / "items.parquet")
    size = sum(f.stat().st_size for f in inter.iterdir())
    return {"rows": rows, "users": n_users, "items": items, "parts": parts, "zipf": zipf,
            "input_bytes": size, "generate_seconds": round(time.perf_counter() - started, 1)}


def tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # the child has just exited
        return total
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(cmd: list[str], env: dict, log_path: Path) -> dict:
    """Run ``cmd``; wall time, peak RSS of its process tree (sampled; and the kernel's ``ru_maxrss`` of this
    child and its descendants alone) and peak growth of the disk's used bytes."""
    import psutil

    disk0 = shutil.disk_usage(log_path.parent).used
    peak = {"rss": 0, "disk": 0}
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        proc = psutil.Process(child.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak["rss"] = max(peak["rss"], tree_rss(proc))
                peak["disk"] = max(peak["disk"], shutil.disk_usage(log_path.parent).used - disk0)
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4: this child's own rusage (RUSAGE_CHILDREN would be the max over every child so far)
        _, status, usage = os.wait4(child.pid, 0)
        rc = child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    return {"rc": rc, "wall_seconds": round(wall, 1), "peak_rss_tree_gb": round(peak["rss"] / 1024**3, 2),
            "ru_maxrss_gb": round(usage.ru_maxrss / 1024**2, 2),  # Linux: KiB
            "peak_disk_growth_gb": round(peak["disk"] / 1024**3, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--items", type=int, default=None, help="catalogue size (default rows / 100)")
    ap.add_argument("--parts", type=int, default=None, help="Parquet parts (default one per ~2M rows)")
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k-core", type=int, default=5)
    ap.add_argument("--memory-limit", default="4GB", help="GR2_DUCKDB_MEMORY_LIMIT ('' for DuckDB's 80%% of RAM)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench" / "ooc")
    ap.add_argument("--pandas", action="store_true", help="also run the in-memory engine and compare the files")
    ap.add_argument("--keep", action="store_true", help="keep the log and the runs")
    ap.add_argument("--json", type=Path, default=None, help="append the result as one JSON line")
    args = ap.parse_args()
    items = args.items or max(1000, args.rows // 100)
    parts = args.parts or max(1, args.rows // 2_000_000)

    need = args.rows * 60  # input + output + DuckDB's scratch, with room
    args.dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.dir).free
    print(f"free disk under {args.dir}: {free / 1024**3:.1f} GB (about {need / 1024**3:.1f} GB needed)", flush=True)
    if free < need:
        sys.exit("not enough free disk: lower --rows or point --dir elsewhere")
    folder = args.dir / "log"
    if folder.exists():
        shutil.rmtree(folder)
    result: dict = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                    f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GB RAM",
                    "load_average_before": os.getloadavg()[0], "k_core": args.k_core,
                    "memory_limit": args.memory_limit, "threads": args.threads}
    try:
        result["log"] = generate(folder, args.rows, items, parts, args.zipf, args.seed)
        print(f"generated {result['log']}", flush=True)
        engines = ["duckdb"] + (["pandas"] if args.pandas else [])
        for engine in engines:
            run = args.dir / f"run-{engine}"
            if run.exists():
                shutil.rmtree(run)
            env = dict(os.environ, GR2_DUCKDB_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
            if args.memory_limit:
                env["GR2_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
            cmd = [str(ROOT / ".venv" / "bin" / "gr2"), "run", "--dataset", str(folder), "--out", str(run),
                   "--stages", "data", "--set", f"data.engine={engine}", "--set", f"data.k_core={args.k_core}", "-v"]
            print(" ".join(cmd), flush=True)
            got = measure(cmd, env, args.dir / f"{engine}.log")
            if got["rc"] != 0:
                print((args.dir / f"{engine}.log").read_text()[-3000:])
                sys.exit(f"{engine}: exit code {got['rc']}")
            stats = json.loads((run / "data" / "stats.json").read_text())
            got["stats"] = {k: stats[k] for k in ("users", "items", "interactions", "avg_history_len")}
            got["stats"]["filtering"] = stats["filtering"]
            got["output_bytes"] = (run / "data" / "interactions.parquet").stat().st_size
            got["stage_log"] = [line.rstrip() for line in (args.dir / f"{engine}.log").read_text().splitlines()
                                if "data (duckdb" in line or "data:" in line][-20:]
            result[engine] = got
            print(json.dumps({engine: got}, indent=1), flush=True)
        if args.pandas:
            same = {name: (args.dir / "run-pandas" / "data" / name).read_bytes()
                    == (args.dir / "run-duckdb" / "data" / name).read_bytes()
                    for name in ("items.parquet", "interactions.parquet", "stats.json")}
            result["same_files"] = same
            print(f"same files: {same}", flush=True)
    finally:
        if not args.keep:
            for path in [folder, *args.dir.glob("run-*")]:
                shutil.rmtree(path, ignore_errors=True)
    result["load_average_after"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("duckdb", "pandas")}, indent=1))


if __name__ == "__main__":
    main()
