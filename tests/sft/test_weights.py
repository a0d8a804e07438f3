"""Token weights of the SFT loss: which tokens are reasoning, which are ranking, which are prompt."""

from __future__ import annotations

import json

import pytest
import tiny_llm

from gr2.prompts.chat import end_of_turn
from gr2.prompts.render import assistant_text
from gr2.sft.train import PARTS, encode_example
from gr2.sft.weights import (
    PROMPT,
    RANKING,
    REASONING,
    part_weights,
    ranking_start,
    token_parts,
    token_weights,
)

from .conftest import CORPUS, SIDS, make_examples

WITH = assistant_text("The user buys shampoo.", SIDS)
WITHOUT = assistant_text(None, SIDS, reasoning=False)


def chars(text: str, start: int = 0) -> list[tuple[int, int]]:
    """One token per character of ``text``, which starts at ``start`` in the full text."""
    return [(start + i, start + i + 1) for i in range(len(text))]


@pytest.mark.parametrize("completion, expected", [
    (WITH, WITH.index('"recommendations"')),
    (WITHOUT, 0),
    ('{ "explanation" : "a" ,\n   "recommendations"  :[ "x" ] }', 27),
    ('  {\n "recommendations": ["x"]}', 0),
    ('{"explanation": "b", "recommendations":["x"]}', 21),
    # the word quoted inside the explanation is escaped there: the real key is the one that counts
    (assistant_text('I put "recommendations": last', SIDS), None),
])
def test_ranking_start(completion, expected):
    got = ranking_start(completion)
    if expected is None:
        expected = completion.rindex('"recommendations"')
        assert completion.index('recommendations') < expected
    assert got == expected
    assert completion[got:].lstrip("{ \n").startswith('"recommendations"')


def test_ranking_start_needs_the_key():
    with pytest.raises(ValueError, match="recommendations"):
        ranking_start('{"explanation": "no ranking here"}')
    with pytest.raises(ValueError):
        ranking_start('{"explanation": "x", \\"recommendations\\": []}')  # escaped: not a key


def test_char_tokens_split_exactly():
    prompt = "<|im_start|>user\nrank<|im_end|>\n<|im_start|>assistant\n"
    text = prompt + WITH
    offsets = chars(text)
    w = token_weights(WITH, offsets, len(prompt), len(prompt), 0.5, 1.0)
    split = len(prompt) + WITH.index('"recommendations"')
    assert w == [0.0] * len(prompt) + [0.5] * (split - len(prompt)) + [1.0] * (len(text) - split)
    no_reason = token_weights(WITHOUT, chars(prompt + WITHOUT), len(prompt), len(prompt), 0.5, 1.0)
    assert no_reason == [0.0] * len(prompt) + [1.0] * len(WITHOUT)  # even the opening brace


def test_token_straddling_the_split_is_ranking():
    # tokens: '{"explanation": "a"' | ', "rec' | 'ommendations": ["x"]}'
    c = '{"explanation": "a", "recommendations": ["x"]}'
    offsets = [(0, 19), (19, 25), (25, len(c))]
    assert token_parts(offsets, 0, ranking_start(c)) == [REASONING, RANKING, RANKING]
    # a token that ends right before the key's quote stays reasoning
    offsets = [(0, 21), (21, len(c))]
    assert token_parts(offsets, 0, ranking_start(c)) == [REASONING, RANKING]


@pytest.mark.parametrize("lr, lo", [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0), (2.0, 0.25)])
def test_lambda_values(lr, lo):
    w = token_weights(WITH, chars(WITH), 0, 0, lr, lo)
    split = WITH.index('"recommendations"')
    assert w[:split] == [lr] * split and w[split:] == [lo] * (len(WITH) - split)
    assert part_weights(lr, lo) == (0.0, lr, lo)


def test_prompt_tokens_weigh_zero_even_when_they_reach_into_the_completion():
    prompt = "P" * 5
    offsets = [(0, 3), (3, 7)] + chars(WITH[2:], 7)  # the 2nd prompt token swallows 2 completion chars
    w = token_weights(WITH, offsets, 5, 2, 0.5, 1.0)
    assert w[:2] == [0.0, 0.0] and set(w[2:]) == {0.5, 1.0}
    assert token_parts(chars(prompt + WITH), len(prompt) + len(WITH), 0) == [PROMPT] * (len(prompt) + len(WITH))


def test_negative_lambda_rejected():
    with pytest.raises(ValueError):
        part_weights(-0.1, 1.0)


def test_end_of_turn(tok):
    assert end_of_turn(tok) == "<|im_end|><eos>"  # no template: ChatML, then EOS so generation stops
    chat = tiny_llm.make_tokenizer(CORPUS, vocab_size=320)
    chat.add_special_tokens({"eos_token": "<|im_end|>"})
    chat.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert end_of_turn(chat) == "<|im_end|>"  # the template's end of turn is the EOS: nothing added


@pytest.mark.parametrize("reasoning", [True, False])
def test_encode_example_on_a_real_tokenizer(tok, reasoning):
    ex = make_examples(1, reasoning=reasoning)[0]
    row = encode_example(tok, ex["messages"], ex["completion"])
    ids, labels, parts = row["input_ids"], row["labels"], row[PARTS]
    assert len(ids) == len(labels) == len(parts)
    n_prompt = parts.index(REASONING if reasoning else RANKING)
    assert set(parts[:n_prompt]) == {PROMPT} and labels[:n_prompt] == [-100] * n_prompt
    assert PROMPT not in parts[n_prompt:] and labels[n_prompt:] == ids[n_prompt:]
    assert parts == sorted(parts[:n_prompt]) + sorted(parts[n_prompt:])  # reasoning, then ranking
    completion = tok.decode(ids[n_prompt:])
    assert completion == ex["completion"] + "<|im_end|><eos>"
    ranking = tok.decode([i for i, p in zip(ids, parts) if p == RANKING])
    assert ranking.strip().startswith('"recommendations"' if reasoning else '{"recommendations"')
    assert ranking.endswith(']}<|im_end|><eos>')
    if reasoning:
        explanation = tok.decode([i for i, p in zip(ids, parts) if p == REASONING])
        assert explanation.startswith('{"explanation": ') and json.loads(ex["completion"])["explanation"] in explanation
