"""``gr2 eval retrieval``: the mid-trained LLM as a full-catalogue retriever (docs/method.md §4) next to the
popularity and co-occurrence pre-rankers (:mod:`gr2.prerank`) on the same users. The retrieval itself
(trie-constrained beam search over every valid SID, Recall@k / NDCG@k of the held-out target) is
:func:`gr2.llm.retrieval.evaluate_retrieval`.
"""

from __future__ import annotations

from typing import Any

from gr2.llm.retrieval import evaluate_retrieval

__all__ = ["run_retrieval_eval"]


def run_retrieval_eval(
    run: Any,
    model: str = "midtrain",
    split: str = "test",
    sample: int | None = 500,
    num_beams: int = 10,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """``gr2 eval retrieval``: full-catalogue R@5/10, N@5/10 of ``model`` (default the run's mid-trained
    model) on ``sample`` users of ``split`` (every user of the split, not only those with a candidate
    list), next to the popularity and co-occurrence pre-rankers on the same users. Writes
    ``eval/retrieval-<split>.json`` and ``.md`` and returns the JSON dict."""
    import pandas as pd

    from gr2.data.stage import load_split
    from gr2.lists import seeded_sample
    from gr2.llm.registry import load
    from gr2.prerank import full_catalogue_metrics, make_preranker
    from gr2.reuse import detach
    from gr2.runs import atomic_write_json, atomic_write_text, model_source, read_json

    data = load_split(run)
    n_items = read_json(run.file("data", "stats.json"))["items"]
    examples = seeded_sample(data.examples(split), sample, seed)
    histories = [h for _, h, _ in examples]
    targets = [t for _, _, t in examples]
    rows: dict[str, dict[str, float]] = {}
    for name in ("popularity", "cooc"):
        pre = make_preranker(name)
        pre.fit(data.train, n_items)
        rows[name] = full_catalogue_metrics(pre, histories, targets, ks=(5, 10))
    lm, tok = load(model_source(run, model))
    sids = pd.read_parquet(run.file("sid", "sids.parquet"))
    res = evaluate_retrieval(lm, tok, sids, list(zip(histories, targets)), num_beams=num_beams,
                             batch_size=batch_size)
    rows[f"LLM beam ({model})"] = {k: res[k] for k in ("R@5", "R@10", "N@5", "N@10", "n")}
    out = {"split": split, "n_users": len(examples), "num_beams": num_beams, "model": model,
           "ms_per_user": res["ms_per_example"], "systems": rows}
    detach(run, "eval")  # an eval folder linked from another run gets this run's file only
    folder = run.stage_dir("eval")
    atomic_write_json(folder / f"retrieval-{split}.json", out)
    lines = [f"# Full-catalogue retrieval on {len(examples)} {split} users (seen items excluded)", "",
             "| system | R@5 | R@10 | N@5 | N@10 |", "|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in ("R@5", "R@10", "N@5", "N@10")) + " |"
              for name, m in rows.items()]
    table = "\n".join(lines) + "\n"
    atomic_write_text(folder / f"retrieval-{split}.md", table)
    print(table)
    return out
