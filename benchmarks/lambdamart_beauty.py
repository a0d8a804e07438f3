"""LambdaMART re-ranking of seen-filtered SASRec top-10 lists on Amazon Beauty (docs/method.md §2).

Protocol: leave-one-out (last item = test, second-to-last = validation, rest = train). SASRec is fitted on
the train prefixes with early stopping on validation NDCG@10; seen-filtered top-10 lists are built for the
validation target (history = train prefix) and the test target (history = train prefix + validation item);
only lists that contain their target are kept (paper protocol). The feature builder is fitted on the
items and the TRAIN prefixes; LambdaMART is fitted on the validation lists only (honest training) and
evaluated on the test lists against the pre-rank order (plus popularity and random orders, and feature
ablations). Paired bootstrap (1000 resamples) of the relative N@5 / R@1 gain over the pre-rank order.

    PYTHONPATH=src .venv/bin/python benchmarks/lambdamart_beauty.py \\
        [--sasrec-dir runs/bench/sasrec-beauty] [--json runs/bench/lambdamart_beauty.json] [--no-ablations]

``--sasrec-dir`` caches the trained SASRec (loaded when present). ``--prerank cooc`` swaps in the
transition-count pre-ranker (fast; not the reference setting).
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

import numpy as np
import pandas as pd

from gr2.metrics.bootstrap import paired_bootstrap
from gr2.metrics.ranking import per_list_metrics
from gr2.prerank import make_preranker
from gr2.prerank.base import top_k
from gr2.rerank import FeatureBuilder, LambdaMARTConfig, LambdaMARTReranker

DATA = Path("/work/shared/data/amazon-beauty")
K = 10
REPORT = ("R@1", "R@3", "R@5", "R@10", "N@3", "N@5", "N@10")

ABLATIONS: dict[str, tuple[str, ...]] = {
    # docs/method.md §2: "with only position, score, popularity and category overlap it gains nothing"
    "pos+score+pop+cat": ("pos", "score", "score_gap_best", "score_gap_next", "score_z", "log_pop",
                          "cat_lcp_last", "cat_share_d1", "cat_share_d2", "cat_share_d3", "cat_share_d4"),
    "no transitions": tuple(),  # filled below: all minus trans_*
    "no tfidf": tuple(),  # all minus tfidf_*
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(data: Path) -> tuple[list[list[int]], pd.DataFrame]:
    with gzip.open(data / "sequences.jsonl.gz", "rt") as fh:
        seqs = [json.loads(line)["items"] for line in fh]
    items = pd.read_json(data / "items.jsonl.gz", lines=True)
    return seqs, items


def build_lists(pr, histories: list[list[int]], targets: list[int], split: str) -> tuple[pd.DataFrame, int]:
    """Seen-filtered top-K lists; returns only the lists containing their target, and the total count."""
    ids, vals = top_k(pr, histories, k=K, exclude_seen=True, progress=False)
    tgt = np.asarray(targets, dtype=np.int64)
    labels = (ids == tgt[:, None]).astype(np.int64)
    keep = np.flatnonzero(labels.any(axis=1))
    df = pd.DataFrame(
        {
            "example_id": [f"{split}-{u}" for u in keep],
            "user_id": keep.astype(np.int64),
            "history": [histories[u] for u in keep],
            "candidates": list(ids[keep]),
            "scores": list(vals[keep].astype(np.float64)),
            "labels": list(labels[keep]),
            "target": tgt[keep],
            "split": split,
        }
    )
    return df, len(histories)


def metrics(orders: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return per_list_metrics(list(orders), list(labels), recall_ks=(1, 3, 5, 10), ndcg_ks=(3, 5, 10))


def fmt_row(name: str, m: dict[str, np.ndarray]) -> str:
    return f"| {name} | " + " | ".join(f"{np.nanmean(m[k]):.4f}" for k in REPORT) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--prerank", default="sasrec", choices=["sasrec", "cooc"])
    ap.add_argument("--sasrec-dir", type=Path, default=None, help="load SASRec from here if present, else save")
    ap.add_argument("--device", default="cpu", help="SASRec torch device")
    ap.add_argument("--sasrec", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="SASRecConfig overrides, e.g. max_epochs=30 valid_max_users=5000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--save-model", type=Path, default=None, help="save the LambdaMART model here")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    timings: dict[str, float] = {}
    T = time.perf_counter

    seqs, items = load(args.data)
    n_items = int(max(max(s) for s in seqs) + 1)
    train = [s[:-2] for s in seqs]
    val_hist, val_tgt = [s[:-2] for s in seqs], [s[-2] for s in seqs]
    test_hist, test_tgt = [s[:-1] for s in seqs], [s[-1] for s in seqs]
    print(f"users {len(seqs)}  items {n_items}  train interactions {sum(map(len, train))}", flush=True)

    # ---- pre-ranker
    t0 = T()
    if args.prerank == "sasrec":
        from gr2.prerank.sasrec import SASRecPreranker

        if args.sasrec_dir is not None and (args.sasrec_dir / "model.pt").exists():
            pr = SASRecPreranker.load(args.sasrec_dir, device=args.device)
            print(f"loaded SASRec from {args.sasrec_dir}", flush=True)
        else:
            over = {}
            for kv in args.sasrec:
                key, val = kv.split("=", 1)
                over[key] = json.loads(val) if val not in ("None", "none") else None
            pr = make_preranker("sasrec", device=args.device, seed=args.seed, progress=False, **over)
            pr.fit(train, n_items, valid=list(zip(val_hist, val_tgt)))
            if args.sasrec_dir is not None:
                pr.save(args.sasrec_dir)
        prerank_info = {"best_epoch": pr.best_epoch, "config": pr.config.to_dict()}
    else:
        pr = make_preranker("cooc")
        pr.fit(train, n_items)
        prerank_info = {}
    timings["prerank_fit_s"] = T() - t0

    t0 = T()
    val_df, n_val = build_lists(pr, val_hist, val_tgt, "val")
    test_df, n_test = build_lists(pr, test_hist, test_tgt, "test")
    timings["topk_lists_s"] = T() - t0
    print(f"lists kept: val {len(val_df)}/{n_val} ({len(val_df)/n_val:.3%})  "
          f"test {len(test_df)}/{n_test} ({len(test_df)/n_test:.3%})", flush=True)

    # ---- features + LambdaMART (fit on validation lists only)
    t0 = T()
    fb = FeatureBuilder().fit(items, train)
    timings["features_fit_s"] = T() - t0
    t0 = T()
    fb.transform(test_df)
    timings["features_transform_test_s"] = T() - t0

    cfg = LambdaMARTConfig(seed=args.seed)
    t0 = T()
    lm = LambdaMARTReranker(fb, cfg).fit(val_df)
    timings["lambdamart_fit_s"] = T() - t0
    t0 = T()
    lm_orders = np.stack(lm.rerank(test_df))
    timings["lambdamart_rerank_test_s"] = T() - t0
    if args.save_model:
        lm.save(args.save_model)

    labels = np.stack(test_df["labels"].to_numpy())
    n = len(test_df)
    rng = np.random.default_rng(args.seed)
    pre_orders = np.broadcast_to(np.arange(K), (n, K))
    pop = np.stack([fb.pop[c] for c in test_df["candidates"]])
    pop_orders = np.argsort(-pop, axis=1, kind="stable")
    rand_orders = np.argsort(rng.random((n, K)), axis=1)
    systems = {
        "pre-rank order": metrics(pre_orders, labels),
        "random order": metrics(rand_orders, labels),
        "popularity order": metrics(pop_orders, labels),
        "LambdaMART (all features)": metrics(lm_orders, labels),
    }
    ablation_info = {}
    if not args.no_ablations:
        all_names = list(fb.feature_names)
        ABLATIONS["no transitions"] = tuple(f for f in all_names if not f.startswith("trans_"))
        ABLATIONS["no tfidf"] = tuple(f for f in all_names if not f.startswith("tfidf_"))
        for name, feats in ABLATIONS.items():
            t0 = T()
            m = LambdaMARTReranker(fb, LambdaMARTConfig(seed=args.seed, features=feats)).fit(val_df)
            systems[f"LambdaMART ({name})"] = metrics(np.stack(m.rerank(test_df)), labels)
            ablation_info[name] = {"n_trees": m.n_trees, "fit_s": round(T() - t0, 2)}

    print(f"\ntest lists: {n} (pre-ranker: {args.prerank}); LambdaMART trained on {len(val_df)} val lists, "
          f"{lm.n_trees} trees (CV NDCG@5 {lm.fit_info['cv_best_ndcg']:.4f})\n")
    print("| order | " + " | ".join(REPORT) + " |")
    print("|---|" + "---|" * len(REPORT))
    for name, m in systems.items():
        print(fmt_row(name, m))

    base = systems["pre-rank order"]
    boots = {}
    print()
    for name, m in systems.items():
        if name == "pre-rank order":
            continue
        for key in ("R@1", "R@5", "N@5"):
            b = paired_bootstrap(base[key], m[key], n_boot=args.n_boot, seed=args.seed)
            boots[f"{name} {key}"] = b
            if key == "N@5" or name == "LambdaMART (all features)":
                print(f"{name:32s} {key}: {b['mean_a']:.4f} -> {b['mean_b']:.4f}  rel {b['rel_diff']:+.1%} "
                      f"(95% CI {b['rel_lo']:+.1%} .. {b['rel_hi']:+.1%}, p={b['p_value']:.3f})")

    imp = lm.feature_importances()
    total = sum(imp.values()) or 1.0
    print("\nfeature importance (gain share):")
    for f, g in list(imp.items())[:10]:
        print(f"  {f:16s} {g / total:6.1%}")
    timings = {k: round(v, 2) for k, v in timings.items()}
    print("\ntimings (s):", json.dumps(timings), f" peak RSS {peak_rss_mb():.0f} MB")

    if args.json:
        out = {
            "prerank": args.prerank,
            "prerank_info": prerank_info,
            "n_val_lists": len(val_df),
            "n_test_lists": n,
            "lambdamart": {"config": lm.config.__dict__, "fit_info": lm.fit_info},
            "metrics": {name: {k: float(np.nanmean(v)) for k, v in m.items()} for name, m in systems.items()},
            "bootstrap_vs_prerank": boots,
            "feature_importance_gain": imp,
            "ablations": ablation_info,
            "timings_s": timings,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
