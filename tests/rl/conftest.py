"""A tiny run directory (data/, sid/, candidates/) and a tiny random llama for the RL tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gr2.prompts.render import PromptConfig
from gr2.rl.config import RLConfig
from gr2.runs import RunDir

N_ITEMS = 12
K = 4
N_LISTS = 6
#: Short prompts keep the tiny model fast: SIDs only, two history items, no priming.
PROMPT = PromptConfig(item_format="compact", max_history=2, domain_priming=False, max_explanation_words=None)


def sid_of(i: int) -> str:
    from gr2.prompts.sids import render_sid

    return render_sid([i // 4, i % 4, (3 * i) % 4])


def make_lists(n: int = N_LISTS, k: int = K) -> pd.DataFrame:
    """List j: history (j, j+1), candidates j+2..j+2+k-1 (mod N_ITEMS), target at position j % k."""
    rows = []
    for j in range(n):
        cands = [(j + 2 + c) % N_ITEMS for c in range(k)]
        labels = [int(c == j % k) for c in range(k)]
        rows.append({"example_id": f"train-{j}", "user_id": j, "history": [j % N_ITEMS, (j + 1) % N_ITEMS],
                     "candidates": cands, "scores": [float(k - c) for c in range(k)], "labels": labels,
                     "target": cands[j % k], "split": "train"})
    return pd.DataFrame(rows)


def make_run(root: Path) -> RunDir:
    run = RunDir(root)
    items = pd.DataFrame({
        "item_id": range(N_ITEMS), "raw_id": [f"r{i}" for i in range(N_ITEMS)],
        "title": [f"Shampoo {i}" for i in range(N_ITEMS)],
        "categories": [["Beauty", f"Group {i % 3}"] for i in range(N_ITEMS)],
        "description": [""] * N_ITEMS,
    })
    items.to_parquet(run.stage_dir("data") / "items.parquet", index=False)
    sids = pd.DataFrame({"item_id": range(N_ITEMS), "codes": [[i // 4, i % 4, (3 * i) % 4] for i in range(N_ITEMS)],
                         "sid": [sid_of(i) for i in range(N_ITEMS)]})
    sids.to_parquet(run.stage_dir("sid") / "sids.parquet", index=False)
    lists = make_lists()
    lists.loc[len(lists)] = {**lists.iloc[0].to_dict(), "example_id": "train-missed", "labels": [0] * K}
    lists.to_parquet(run.stage_dir("candidates") / "train.parquet", index=False)
    return run


def make_tokenizer():
    """A BPE tokenizer trained on the test prompts themselves, so they are short in tokens."""
    import dataclasses

    import tiny_llm

    from gr2.prompts.render import ItemText, build_messages, system_message

    items = {i: ItemText(item_id=i, sid=sid_of(i)) for i in range(N_ITEMS)}
    corpus = [system_message(PROMPT), system_message(dataclasses.replace(PROMPT, reasoning=False)),
              '{"explanation": "because", "recommendations": ["<s_a_1><s_b_2><s_c_3>"]}']
    for _, row in make_lists().iterrows():
        rp = build_messages(list(row["history"]), list(row["candidates"]), PROMPT, rng_key=row["example_id"],
                            items=items)
        corpus.append(rp.messages[1]["content"])
    return tiny_llm.make_tokenizer(corpus * 3, vocab_size=700)


def make_model(vocab_size: int):
    import tiny_llm

    return tiny_llm.make_model(vocab_size, max_positions=4096)


def tiny_cfg(**kw) -> RLConfig:
    base = dict(init="unused", prompt=PROMPT, num_generations=2, batch_size=2, steps=2, max_completion_length=6,
                overlong_buffer=2, save_steps=1, logging_steps=1, lr=1e-3, device="cpu", num_threads=1,
                max_resample_rounds=1)
    base.update(kw)
    return RLConfig(**base)


@pytest.fixture
def tiny_run(tmp_path: Path) -> RunDir:
    return make_run(tmp_path / "run")
