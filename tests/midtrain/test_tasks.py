"""Task builders: train split only, loss masks, mixture proportions."""

from __future__ import annotations

import re

import pytest

from gr2.midtrain.config import ONEREC_THINK_MIXTURE, TASKS, MidtrainConfig
from gr2.midtrain.tasks import (
    build_examples,
    lm_passages,
    load_inputs,
    sid_shape,
    task_counts,
)
from gr2.prompts.sids import iter_sids, parse_sid

from .conftest import CODEBOOK, LEVELS, codes_of, heldout_items, make_tokenizer


def _cfg(**kw) -> MidtrainConfig:
    base = dict(n_examples=400, eval_examples_per_task=16, lm_source="catalogue", max_history=4, persona_items=3)
    base.update(kw)
    return MidtrainConfig(**base)


def test_default_mixture_is_onerec_think():
    m = MidtrainConfig().mixture
    assert m == ONEREC_THINK_MIXTURE and set(m) == set(TASKS)
    assert abs(m["persona"] - 0.243) < 1e-9 and abs(m["sequential"] - 0.657) < 1e-9
    assert abs(m["caption"] + m["reverse_caption"] - 0.049) < 1e-9 and abs(m["lm"] - 0.05) < 1e-9
    assert abs(sum(m.values()) - 0.999) < 1e-9  # the paper's shares sum to 99.9 %: normalised


def test_task_counts_proportions_and_cap():
    c = task_counts(ONEREC_THINK_MIXTURE, 10000)
    assert sum(c.values()) == 10000
    total = sum(ONEREC_THINK_MIXTURE.values())
    for t in TASKS:
        assert abs(c[t] - 10000 * ONEREC_THINK_MIXTURE[t] / total) < 1.0, t
    assert task_counts({"sequential": 3, "caption": 1}, 8) == {
        "persona": 0, "sequential": 6, "caption": 2, "reverse_caption": 0, "lm": 0}
    assert task_counts(ONEREC_THINK_MIXTURE, 1000, cap=100)["sequential"] == 100
    with pytest.raises(ValueError):
        task_counts({"nope": 1.0}, 10)


def test_sid_shape_and_mixture_in_examples(tiny_run):
    assert sid_shape(tiny_run) == (LEVELS, CODEBOOK)
    cfg = _cfg(n_examples=1000)
    train, ev = build_examples(load_inputs(tiny_run, cfg), cfg)
    got = train["task"].value_counts().to_dict()
    assert got == {t: n for t, n in task_counts(cfg.mixture, 1000).items() if n}
    assert set(ev["task"]) <= set(TASKS)  # tiny pools: most held-out draws also occur in train, dropped
    assert not set(zip(ev.prompt, ev.completion)) & set(zip(train.prompt, train.completion))
    small = _cfg(n_examples=40)
    train, ev = build_examples(load_inputs(tiny_run, small), small)
    assert len(train) == 40 and {"sequential", "caption"} <= set(ev["task"])
    assert not set(zip(ev.prompt, ev.completion)) & set(zip(train.prompt, train.completion))


def _items_mentioned(text: str) -> set[int]:
    ids = {codes[0] * 8 + codes[1] for codes in iter_sids(text)}
    ids |= {int(m) for m in re.findall(r"(?:Shampoo number|Heldout gadget) (\d+)", text)}
    return ids


@pytest.mark.parametrize("caption_items", ["train", "all"])
def test_no_validation_or_test_target_leaks(tiny_run, caption_items):
    cfg = _cfg(caption_items=caption_items)
    train, ev = build_examples(load_inputs(tiny_run, cfg), cfg)
    held = heldout_items()
    for df in (train, ev):
        for task, p, c in zip(df.task, df.prompt, df.completion):
            mentioned = _items_mentioned(p + c)
            if task in ("persona", "sequential") or caption_items == "train":
                assert not mentioned & held, (task, p, c)
    # sequential examples are real (history -> next) pairs of some user's TRAINING sequence
    seq = train[train.task == "sequential"]
    assert len(seq) > 0
    for p, c in zip(seq.prompt, seq.completion):
        hist = [codes[0] * 8 + codes[1] for codes in iter_sids(p)]
        target = parse_sid(c)
        assert target == tuple(codes_of(target[0] * 8 + target[1]))
        assert (hist[-1] + 1) % 16 == target[0] * 8 + target[1]


def _mask_ranges(tok, prompt, completion):
    from gr2.midtrain.train import tokenize_example

    ids, mask = tokenize_example(tok, prompt, completion)
    return ids, mask


def test_loss_masks_follow_the_task(tiny_run):
    from gr2.llm.vocab import add_sid_tokens
    from gr2.midtrain.train import tokenize_example

    from .conftest import make_model

    cfg = _cfg()
    train, _ = build_examples(load_inputs(tiny_run, cfg), cfg)
    tok = make_tokenizer()
    add_sid_tokens(make_model(len(tok)), tok, levels=LEVELS, codebook_size=CODEBOOK)
    eos = tok.eos_token_id
    for task in TASKS:
        row = train[train.task == task].iloc[0]
        ids, mask = tokenize_example(tok, row.prompt, row.completion)
        target = [i for i, m in zip(ids, mask) if m]
        assert target[-1] == eos
        if task in ("sequential", "reverse_caption"):  # loss on the SID (+ EOS) only
            assert len(target) == LEVELS + 3
            assert tok.decode(target[:-1]) == row.completion
            assert sum(1 for m in mask if not m) > LEVELS + 2  # the prompt is masked
        elif task == "caption":  # loss on the text only, not the SID in the prompt
            assert tok.decode(target[:-1]).strip() == row.completion.strip()
            assert not list(iter_sids(tok.decode(target)))
        else:  # persona / lm: (almost) the whole sequence is trained on
            assert sum(mask) >= 0.7 * len(mask)


def test_lm_docstrings_offline():
    passages = lm_passages(MidtrainConfig(lm_chars=300))
    assert len(passages) > 100 and all(40 <= len(p) <= 300 for p in passages)
