"""Benchmark: the SID stage on Amazon Beauty end to end (embed + train + assign + resolve).

    python benchmarks/sid_beauty.py [--run-dir runs/sid-beauty] [--fresh-cache] [--set field=value ...]

Builds ``data/items.parquet`` / ``data/interactions.parquet`` from ``shared/data/amazon-beauty``
when the run directory has none (the data stage's schema, docs/artifacts.md), runs
``gr2.sid.stage.run_sid`` and prints wall time, peak RSS and the report's headline numbers.
Target: under 2 minutes on 2 CPU cores (embedding included, i.e. with ``--fresh-cache``). On a
machine shared with other jobs, the CPU seconds of a ``--set num_threads=1`` run are what it would
take alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gr2.runs import RunDir, atomic_write_parquet  # noqa: E402
from gr2.sid.config import SidConfig  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon-beauty"


def beauty_dir() -> Path:
    for cand in (BEAUTY, Path("/work/shared/data/amazon-beauty")):
        if cand.exists():
            return cand
    raise FileNotFoundError("shared/data/amazon-beauty not found")


def make_beauty_run(run_dir: Path) -> RunDir:
    """Write the data stage's two files for Beauty if absent (description '', timestamp NaN)."""
    run = RunDir(run_dir)
    data = run_dir / "data"
    if (data / "items.parquet").exists() and (data / "interactions.parquet").exists():
        return run
    src = beauty_dir()
    with gzip.open(src / "items.jsonl.gz", "rt") as fh:
        items = [json.loads(line) for line in fh]
    items_df = pd.DataFrame({
        "item_id": np.array([r["item_id"] for r in items], dtype=np.int64),
        "raw_id": [str(r["item_id"]) for r in items],
        "title": [r.get("title") or "" for r in items],
        "categories": [list(r.get("categories") or []) for r in items],
        "description": ["" for _ in items],
    }).sort_values("item_id").reset_index(drop=True)
    rows = []
    with gzip.open(src / "sequences.jsonl.gz", "rt") as fh:
        for line in fh:
            r = json.loads(line)
            for pos, it in enumerate(r["items"]):
                rows.append((r["user_id"], it, pos))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "position"]).astype("int64")
    inter["timestamp"] = np.nan
    inter["raw_user_id"] = inter["user_id"].astype(str)
    atomic_write_parquet(data / "items.parquet", items_df)
    atomic_write_parquet(data / "interactions.parquet", inter)
    return run


def parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        k, _, v = p.partition("=")
        out[k] = yaml.safe_load(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "sid-beauty"))
    ap.add_argument("--fresh-cache", action="store_true", help="delete the embedding cache first")
    ap.add_argument("--set", nargs="*", default=[], help="SidConfig overrides, e.g. epochs=20")
    args = ap.parse_args()
    run = make_beauty_run(Path(args.run_dir))
    if args.fresh_cache:
        shutil.rmtree(run.path / "sid" / "cache", ignore_errors=True)
    cfg = SidConfig(**parse_sets(args.set))
    t0, c0 = time.perf_counter(), time.process_time()
    from gr2.sid.stage import run_sid

    summary = run_sid(run, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    report = json.loads((run.path / "sid" / "report.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(summary, indent=1))
    print(f"timings: {report['timings']}  (embedding cache: {report['embedding']['cache']})")
    print(f"raw: uniqueness {report['raw']['uniqueness']:.4f}, distinct {report['raw']['distinct']}/"
          f"{report['items']}, collisions {report['raw']['collisions']}, largest bucket "
          f"{report['raw']['largest_bucket']}, largest prefix bucket {report['raw']['largest_prefix_bucket']}")
    print(f"final: uniqueness {report['final']['uniqueness']:.4f}, resolution {report['resolution']}")
    print("per level (raw): " + "; ".join(f"L{s['level']} used {s['codes_used']} ppl {s['perplexity']:.1f}"
                                         for s in report["raw"]["per_level"]))
    print(f"reconstruction: {report['reconstruction']}")
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (imports of torch/sklearn included), peak RSS {peak:.0f} MiB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
