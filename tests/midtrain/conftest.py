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
    from gr2.sid.render import render_sid

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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<eos>")


def make_model(vocab_size: int, tied: bool = True):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=tied, eos_token_id=0, pad_token_id=0, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


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
