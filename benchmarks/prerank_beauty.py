"""Pre-rankers on Amazon Beauty: seen-filtered full-catalogue test Recall@10 / NDCG@10.

Leave-one-out by time: last item = test, second-to-last = validation, the rest = train. Every pre-ranker
is fitted on the train prefixes; SASRec early-stops on validation NDCG@10 (history = train prefix).
Test histories are train prefix + validation item. Reports fit time, time to score (top-10) all users,
and the process's peak RSS.

    PYTHONPATH=src .venv/bin/python benchmarks/prerank_beauty.py [--only sasrec] [--hidden 64 ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import resource
import sys
import time
from pathlib import Path

from gr2.prerank import SASRecConfig, full_catalogue_metrics, make_preranker, top_k

DATA = Path("/work/shared/data/amazon-beauty/sequences.jsonl.gz")
N_ITEMS = 12101


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--only", nargs="*", default=["popularity", "cooc", "sasrec"])
    ap.add_argument("--save-sasrec", type=Path, default=None, help="directory to save the trained SASRec")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    for f in ("hidden", "blocks", "heads", "max_len", "batch_size", "max_epochs", "patience", "eval_every",
              "seed", "ff_mult", "num_threads", "n_negatives", "valid_max_users"):
        ap.add_argument(f"--{f.replace('_', '-')}", type=int, default=None)
    for f in ("dropout", "lr", "weight_decay"):
        ap.add_argument(f"--{f.replace('_', '-')}", type=float, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    with gzip.open(args.data, "rt") as fh:
        seqs = [json.loads(line)["items"] for line in fh]
    n_items = max(max(s) for s in seqs) + 1
    assert n_items == N_ITEMS, n_items
    train = [s[:-2] for s in seqs]
    valid = [(s[:-2], s[-2]) for s in seqs]
    test_hist = [s[:-1] for s in seqs]
    test_tgt = [s[-1] for s in seqs]
    print(f"users {len(seqs)}  items {n_items}  train interactions {sum(map(len, train))}", flush=True)

    overrides = {k: v for k, v in vars(args).items()
                 if k in {f.name for f in SASRecConfig.__dataclass_fields__.values()} and v is not None}
    results = {}
    for name in args.only:
        kwargs = {"config": SASRecConfig(**overrides)} if name == "sasrec" else {}
        pr = make_preranker(name, **kwargs)
        t0, c0 = time.perf_counter(), cpu_s()
        pr.fit(train, n_items, valid=valid)
        fit_s, fit_cpu = time.perf_counter() - t0, cpu_s() - c0
        t0, c0 = time.perf_counter(), cpu_s()
        top_k(pr, test_hist, k=10, exclude_seen=True, progress=False)
        score_s, score_cpu = time.perf_counter() - t0, cpu_s() - c0
        m = full_catalogue_metrics(pr, test_hist, test_tgt, ks=(1, 5, 10), exclude_seen=True)
        m_unf = full_catalogue_metrics(pr, test_hist, test_tgt, ks=(10,), exclude_seen=False)
        row = {"test_R@10": m["R@10"], "test_N@10": m["N@10"], "test_R@1": m["R@1"], "test_R@5": m["R@5"],
               "test_N@5": m["N@5"], "unfiltered_R@10": m_unf["R@10"], "unfiltered_N@10": m_unf["N@10"],
               "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu, 1),
               "score_topk_all_users_s": round(score_s, 2), "score_cpu_s": round(score_cpu, 2),
               "peak_rss_mb_so_far": round(peak_rss_mb())}
        if name == "sasrec":
            row["config"] = pr.config.to_dict()
            row["best_epoch"] = pr.best_epoch
            row["best_val_N@10"] = max((h.get("val_N@10", -1) for h in pr.history), default=None)
            row["epochs_run"] = pr.history[-1]["epoch"] if pr.history else 0
            if args.save_sasrec:
                pr.save(args.save_sasrec)
        results[name] = row
        print(name, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                if k != "config"}), flush=True)
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
