"""Time the foundation stages on Amazon Beauty: data preparation, pre-ranker fit + candidate lists
(val/test from one SASRec, train from the honest second SASRec), and the baseline evaluation.

    python benchmarks/foundation_beauty.py [--profile quick] [--out runs/bench/foundation]

Prints each stage's wall time (from the run manifest) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import gr2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", default="runs/bench/foundation")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = gr2.load_config(gr2.profile_path(args.profile), args.overrides)
    start = time.perf_counter()
    run = gr2.run_pipeline(args.out, cfg, stages=["data", "candidates", "eval"], force=["data"])
    stages = run.manifest()["stages"]
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads default",
        "profile": args.profile,
        "seconds": {name: stages[name]["seconds"] for name in ("data", "candidates", "eval")},
        "total_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "candidates": json.loads((run.path / "candidates/prerank.json").read_text()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
