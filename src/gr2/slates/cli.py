"""``gr2 slates movielens``: build the MovieLens slates example (light: argparse only until run)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gr2.slates.config import MovieLensSlates

__all__ = ["add_slates_parser", "slates_command"]


def add_slates_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``slates`` to a CLI's sub-parsers; dispatch with ``args.handler(args)``."""
    d = MovieLensSlates()
    p = subparsers.add_parser(
        "slates", help="build an example slates file (MovieLens ratings)",
        description="Build logged-style slates with graded labels from MovieLens ratings (docs/slates.md): "
                    "history = ratings before a global cut time, slate = a pre-ranker's top-K at that time, "
                    "labels = what the user rated next (>= 4 → 2, 3 → 1, else 0).")
    p.add_argument("source", choices=["movielens"], help="what to build from")
    p.add_argument("--out", type=Path, required=True, help="folder for slates.parquet, items.parquet, build.json")
    p.add_argument("--dataset", choices=["ml-1m", "ml-100k"], default="ml-1m")
    p.add_argument("--k", type=int, default=d.k, help="candidates per slate")
    p.add_argument("--window", type=int, default=d.window, help="ratings after the cut that label the slate")
    p.add_argument("--cut-quantile", type=float, default=d.cut_quantile, help="cut time = this quantile of times")
    p.add_argument("--min-history", type=int, default=d.min_history, help="ratings before the cut, at least")
    p.add_argument("--prerank", choices=["popularity", "cooc"], default=d.prerank)
    p.set_defaults(handler=slates_command)
    return p


def slates_command(args: argparse.Namespace) -> int:
    from gr2.slates.movielens import build_movielens_slates

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    params = MovieLensSlates(k=args.k, window=args.window, cut_quantile=args.cut_quantile,
                             min_history=args.min_history, prerank=args.prerank)
    report = build_movielens_slates(args.out, args.dataset, params)
    print(f"{report['slates']} slates ({report['slates_with_positive']} with a positive) cut at "
          f"{report['cut_time_utc']} in {args.out}\nnext: gr2 run --slates {args.out / 'slates.parquet'} "
          f"--items {args.out / 'items.parquet'} --out runs/{args.dataset}-slates")
    return 0
