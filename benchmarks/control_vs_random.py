"""Is an LLM row above a random order? Per saved system of a run's eval (``eval/systems/*.json``):
N@5 and R@1 with 95% bootstrap intervals over its lists, against a random order's exact expectation
with one relevant candidate in K (N@5 = (1/K) Σ_{r≤5} 1/log2(r+1), R@1 = 1/K), and the one-sided
bootstrap share of resamples at or below it. The eval table compares rows with the pre-rank order;
this answers whether the shuffled-order control reads the items at all.

    .venv/bin/python benchmarks/control_vs_random.py --run-dir runs/beauty-medium
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from gr2.metrics.ranking import labels_in_order, ndcg_at_k, recall_at_k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--bootstrap", type=int, default=10000)
    args = ap.parse_args()
    run = Path(args.run_dir)
    for path in sorted((run / "eval" / "systems").glob("*.json")):
        system = json.loads(path.read_text())
        lists = pd.read_parquet(run / "candidates" / f"{system['split']}.parquet").set_index("example_id")
        n5, r1 = [], []
        for example_id, order in system["orders"].items():
            ranked = labels_in_order(order, lists.loc[example_id, "labels"])
            n5.append(ndcg_at_k(ranked, 5))
            r1.append(recall_at_k(ranked, 1))
        k = len(lists["labels"].iloc[0])
        random_n5 = sum(1 / np.log2(r + 1) for r in range(1, min(5, k) + 1)) / k
        idx = np.random.default_rng(0).integers(0, len(n5), (args.bootstrap, len(n5)))
        for name, values, chance in (("N@5", np.array(n5), random_n5), ("R@1", np.array(r1), 1 / k)):
            boot = values[idx].mean(axis=1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            print(f"{system['name']} ({len(values)} lists): {name} {values.mean():.4f} [{lo:.4f}, {hi:.4f}], "
                  f"random {chance:.4f}, share of resamples <= random {(boot <= chance).mean():.4f}")


if __name__ == "__main__":
    main()
