"""Tiny synthetic run directory (data/ + sid/) and a tiny random llama for the midtrain tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gr2.runs import RunDir

N_USERS = 12
N_TRAIN_ITEMS = 16   # items 0..15 appear in training sequences
N_ITEMS = N_TRAIN_ITEMS + 2 * N_USERS  # 16 + 2u = user u's validation target, 17 + 2u its test target
TRAIN_LEN = 6
LEVELS, CODEBOOK = 3, 8


def codes_of(i: int) -> list[int]:
    return [i // 8, i % 8, (3 * i) % 8]


def heldout_items() -> set[int]:
    return set(range(N_TRAIN_ITEMS, N_ITEMS))


def make_run(root: Path) -> RunDir:
    run = RunDir(root)
    items = pd.DataFrame({
        "item_id": range(N_ITEMS),
        "raw_id": [f"r{i}" for i in range(N_ITEMS)],
        "title": [f"Shampoo number {i}" if i < N_TRAIN_ITEMS else f"Heldout gadget {i}" for i in range(N_ITEMS)],
        "categories": [["Beauty", f"Group {i % 3}"] for i in range(N_ITEMS)],
        "description": ["" for _ in range(N_ITEMS)],
    })
    rows = []
    for u in range(N_USERS):
        seq = [(u + t) % N_TRAIN_ITEMS for t in range(TRAIN_LEN)] + [N_TRAIN_ITEMS + 2 * u, N_TRAIN_ITEMS + 2 * u + 1]
        for pos, i in enumerate(seq):
            rows.append({"user_id": u, "item_id": i, "position": pos, "timestamp": float(pos),
                         "raw_user_id": f"u{u}"})
    d = run.stage_dir("data")
    items.to_parquet(d / "items.parquet", index=False)
    pd.DataFrame(rows).to_parquet(d / "interactions.parquet", index=False)
    from gr2.prompts.sids import render_sid

    sids = pd.DataFrame({"item_id": range(N_ITEMS), "codes": [codes_of(i) for i in range(N_ITEMS)],
                         "sid": [render_sid(codes_of(i)) for i in range(N_ITEMS)]})
    sids.to_parquet(run.stage_dir("sid") / "sids.parquet", index=False)
    return run


CORPUS = [
    "Purchase history of a user (item ID and description per line):",
    "Items a user bought, oldest first: Next item: Title / Categories: Item ID:",
    "Shampoo number 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 / Beauty > Group 0 1 2",
    "Heldout gadget 16 17 18 19 20 30 40",
    "the user bought item 97 and item 168 < > _ s a b c d | sid begin end",
] * 3


def make_tokenizer():
    import tiny_llm

    return tiny_llm.make_tokenizer(CORPUS, vocab_size=320)


def make_model(vocab_size: int, tied: bool = True):
    import tiny_llm

    return tiny_llm.make_model(vocab_size, tied=tied)


@pytest.fixture
def tiny_run(tmp_path: Path) -> RunDir:
    return make_run(tmp_path / "run")


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    tok = make_tokenizer()
    model = make_model(len(tok))
    out = tmp_path / "tiny-llama"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
