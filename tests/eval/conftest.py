"""A tiny run directory with data/, sid/ and candidates/ for the re-ranking evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gr2.prompts.sids import render_sid
from gr2.runs import RunDir

N_ITEMS, N_USERS, SEQ_LEN, K = 20, 6, 6, 5


def sid_of(i: int) -> str:
    return render_sid([i // 8, i % 8, (3 * i) % 8])


def candidate_lists(split: str, seqs: list[list[int]]) -> pd.DataFrame:
    """Each user's ``split`` list: the held-out item (last for test, second to last for val) among K - 1
    items the user never bought, at pre-rank position u % K (test) or (u + 1) % K (val)."""
    held_out, shift = {"test": (1, 0), "val": (2, 1)}[split]
    rows = []
    for u, s in enumerate(seqs):
        target = s[-held_out]
        others = [i for i in range(N_ITEMS) if i not in s][u:u + K - 1]
        at = (u + shift) % K
        cands = others[:at] + [target] + others[at:]
        rows.append({"example_id": f"{split}-{u}", "user_id": u, "history": s[:-held_out], "candidates": cands,
                     "scores": [float(K - j) for j in range(K)], "labels": [int(c == target) for c in cands],
                     "target": target, "split": split})
    return pd.DataFrame(rows)


def make_rerank_run(root: Path) -> RunDir:
    """User u bought items u, u+1, ... (mod 20); its test list has K candidates with the target at
    pre-rank position u % K, its val list the second-to-last item at position (u + 1) % K."""
    run = RunDir(root)
    d = run.stage_dir("data")
    pd.DataFrame({
        "item_id": range(N_ITEMS), "raw_id": [f"r{i}" for i in range(N_ITEMS)],
        "title": [f"Shampoo number {i}" for i in range(N_ITEMS)],
        "categories": [["Beauty", f"Group {i % 3}"] for i in range(N_ITEMS)],
        "description": [""] * N_ITEMS,
    }).to_parquet(d / "items.parquet", index=False)
    seqs = [[(u + t) % N_ITEMS for t in range(SEQ_LEN)] for u in range(N_USERS)]
    pd.DataFrame([{"user_id": u, "item_id": i, "position": p, "timestamp": float(p), "raw_user_id": f"u{u}"}
                  for u, s in enumerate(seqs) for p, i in enumerate(s)]).to_parquet(d / "interactions.parquet", index=False)
    (d / "stats.json").write_text(json.dumps({"users": N_USERS, "items": N_ITEMS, "interactions": N_USERS * SEQ_LEN}))
    pd.DataFrame({"item_id": range(N_ITEMS), "codes": [[i // 8, i % 8, (3 * i) % 8] for i in range(N_ITEMS)],
                  "sid": [sid_of(i) for i in range(N_ITEMS)]}).to_parquet(run.stage_dir("sid") / "sids.parquet", index=False)
    for split in ("test", "val"):
        candidate_lists(split, seqs).to_parquet(run.stage_dir("candidates") / f"{split}.parquet", index=False)
    return run


@pytest.fixture
def rerank_run(tmp_path: Path) -> RunDir:
    return make_rerank_run(tmp_path / "run")
