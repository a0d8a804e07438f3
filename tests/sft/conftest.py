"""Tiny tokenizer, tiny random llama and SFT examples in the traces format for the sft tests."""

from __future__ import annotations

import pytest
import tiny_llm

from gr2.prompts.render import assistant_text

SIDS = ["<s_a_1><s_b_2><s_c_3>", "<s_a_4><s_b_5><s_c_6>", "<s_a_7><s_b_0><s_c_1>"]
CORPUS = [
    '{"explanation": "The user buys shampoo, then conditioner.", "recommendations": ["<s_a_1><s_b_2>"]}',
    "Re-rank the candidates for this user. Purchase history: shampoo, conditioner, styling gel.",
    "system user assistant <|im_start|> <|im_end|> " + " ".join(SIDS),
] * 3


def make_examples(n: int = 4, reasoning: bool = True) -> list[dict]:
    """``n`` SFT examples as ``traces/accepted.jsonl`` holds them."""
    out = []
    for i in range(n):
        ranked = SIDS[i % 3:] + SIDS[:i % 3]
        expl = f"The user buys shampoo {i}, so conditioner comes next." if reasoning else None
        out.append({
            "example_id": f"val-{i}",
            "messages": [{"role": "system", "content": "Re-rank the candidates."},
                         {"role": "user", "content": f"Purchase history: shampoo {i}. Candidates: " + " ".join(SIDS)}],
            "completion": assistant_text(expl, ranked, reasoning=reasoning),
        })
    return out


@pytest.fixture(scope="module")
def tok():
    return tiny_llm.make_tokenizer(CORPUS, vocab_size=320)


@pytest.fixture
def model(tok):
    return tiny_llm.make_model(len(tok), max_positions=1024)
