"""Expected reward of simple policies under each reward (gr2.rl.ablation), on synthetic lists: K = 10,
the target equally often in every pre-rank slot, each list shown in a seeded random order.

    .venv/bin/python benchmarks/reward_ablation.py [--lists 1000] [--k 10]

Prints the markdown table used in docs/training.md ("Why the conditional reward").
"""

from __future__ import annotations

import argparse

import numpy as np

from gr2.rl.ablation import expected_rewards, markdown_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lists", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    labels = [[int(j == i % args.k) for j in range(args.k)] for i in range(args.lists)]
    shown = [rng.permutation(args.k).tolist() for _ in range(args.lists)]
    res = expected_rewards(labels, shown, rewards=("naive", "conditional", "auc", "ndcg"), n_random=100,
                           seed=args.seed)
    print(markdown_table(res))


if __name__ == "__main__":
    main()
