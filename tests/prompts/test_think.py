"""The think-before-recommend structure (gr2.prompts.think): every arrangement of the three tagged steps
up to three blocks, each step's content and each gap between blocks, against an independent oracle;
the tag errors; and the re-ranking parser's ``steps_status`` / ``reasoning_ok`` built on it."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gr2.prompts.parse import parse_output, steps_counts
from gr2.prompts.render import (
    PromptConfig,
    assistant_text,
    build_messages,
    system_message,
)
from gr2.prompts.think import (
    STEP_STATUSES,
    STEP_TAGS,
    parse_steps,
    scan_blocks,
    steps_text,
    structure_status,
)

U, I, C = STEP_TAGS
GOOD = steps_text(["likes <s_a_1> shampoo", "two hair items", "<s_a_2> fits best"])
SIDS = [f"<s_a_{i}><s_b_{i}><s_c_{i}>" for i in range(4)]


def block(name: str, content: str) -> str:
    return f"<{name}>{content}</{name}>"


# --------------------------------------------------------------------------- parse_steps
def test_a_well_formed_explanation_is_ok_and_its_steps_are_read():
    r = parse_steps(GOOD)
    assert r.status == "ok" and r.ok
    assert r.steps == {U: "likes <s_a_1> shampoo", I: "two hair items", C: "<s_a_2> fits best"}
    for sep in ("", " ", "\n", "\n\n  \t"):
        assert parse_steps(sep + steps_text(["a", "b", "c"], sep=sep) + sep).status == "ok", repr(sep)
    assert parse_steps(steps_text(["  spaced  ", "b", "c"])).steps[U] == "spaced"


CONTENTS = {"word": "the user likes shampoo", "empty": "", "blank": " \n ", "punct": " -- ... ",
            "digit": "3", "unicode": "élégant"}
HAS_WORD = {"word": True, "empty": False, "blank": False, "punct": False, "digit": True, "unicode": True}
GAPS = {"none": "", "space": " \n", "text": " so: "}


def oracle(names: tuple[str, ...], contents: tuple[str, ...], gaps: tuple[str, ...]) -> str:
    """The status, from the definition (no scanning): the blocks are given as a list."""
    if len(set(names)) < len(names):
        return "repeated"
    if any(step not in names or not HAS_WORD[contents[names.index(step)]] for step in STEP_TAGS):
        return "missing_step"
    if names != STEP_TAGS:
        return "out_of_order"
    if any(g == "text" for g in gaps):
        return "extra_text"
    return "ok"


def arrangements():
    for n in range(4):
        for names in itertools.product(STEP_TAGS, repeat=n):
            for contents in itertools.product(("word", "empty", "blank") if n < 3 else tuple(CONTENTS), repeat=n):
                for gaps in itertools.product(tuple(GAPS), repeat=n + 1):
                    yield names, contents, gaps


def test_every_arrangement_of_up_to_three_blocks_gets_the_oracle_status():
    seen = set()
    for names, contents, gaps in arrangements():
        text = GAPS[gaps[0]] + "".join(block(nm, CONTENTS[c]) + GAPS[g] for nm, c, g in zip(names, contents, gaps[1:]))
        got = parse_steps(text)
        assert got.status == oracle(names, contents, gaps), (text, got)
        if got.status not in ("repeated",):
            assert set(got.steps) == set(names)
        seen.add(got.status)
    assert seen == set(STEP_STATUSES) - {"malformed"}


@pytest.mark.parametrize("text", [
    f"<{U}>a", f"<{U}>a</{I}>", f"a</{U}>", f"<{U}>a<{I}>b</{I}></{U}>", f"<{U}><{U}>a</{U}>",
    GOOD + f"<{C}>", GOOD.replace(f"</{I}>", ""), f"</{C}>" + GOOD,
])
def test_tags_that_do_not_pair_up_are_malformed_or_repeated(text):
    assert parse_steps(text).status in ("malformed", "repeated")
    assert parse_steps(text).steps == {}


@pytest.mark.parametrize(("text", "status"), [
    (f"<{U}>a</{U}><{U}>b</{U}>", "repeated"),  # a hedge: the step written twice
    (GOOD + block(U, "again"), "repeated"),
    (f"<{U}><{U}>a</{U}></{U}>", "repeated"),  # opened twice in a row
    (f"<{U}>a<{I}>b</{I}></{U}>", "malformed"),  # nested
    (f"<{U}>a</{I}>", "malformed"),  # closed by another tag
    (f"</{U}>", "malformed"),
    (f"<{U}>a", "malformed"),  # left open
    (block(I, "b") + block(U, "a"), "missing_step"),  # missing beats order
    (block(C, "c") + block(I, "b") + block(U, "a") + " p.s.", "out_of_order"),  # order beats extra text
    (block(U, "a") + block(I, "") + block(C, "c") + " tail", "missing_step"),  # an empty step beats extra text
    ("", "missing_step"), ("free text reasoning only", "missing_step"),
    ("1. history 2. next 3. rank", "missing_step"),
    (GOOD.upper(), "missing_step"),  # tags are case-sensitive
    (f"< {U}>a</{U}>" + block(I, "b") + block(C, "c"), "malformed"),  # not an open tag: a lone close
    (block(U, "a") + block(I, "b") + block(C, "c") + "<rating>4</rating>", "extra_text"),  # not a step tag
    (block(U, "a <b>bold</b>") + block(I, "b") + block(C, "c"), "ok"),  # other tags are content
])
def test_statuses_and_their_precedence(text, status):
    assert parse_steps(text).status == status


def test_none_and_long_texts():
    assert parse_steps(None).status == "missing_step"
    long = steps_text(["word " * 200_000, "b", "c"])
    t0 = time.perf_counter()
    assert parse_steps(long).status == "ok"
    hostile = f"<{U}>" * 100_000 + f"</{U}>" * 100_000
    assert parse_steps(hostile).status == "repeated"
    assert time.perf_counter() - t0 < 2.0, "linear in the text"


@given(st.lists(st.sampled_from(list("ab <>/\n") + [f"<{t}>" for t in STEP_TAGS] + [f"</{t}>" for t in STEP_TAGS]),
                max_size=40).map("".join))
def test_any_text_gets_one_status_and_never_raises(text):
    r = parse_steps(text)
    assert r.status in STEP_STATUSES and r.ok == (r.status == "ok")
    if r.status == "ok":  # rewriting the steps read gives an ok text again
        assert parse_steps(steps_text([r.steps[t] for t in STEP_TAGS])).status == "ok"


def test_scan_and_structure_helpers():
    scan = scan_blocks("x" + GOOD + "y", STEP_TAGS)
    assert scan.status is None and [scan.blocks[t][0] for t in STEP_TAGS] == [0, 1, 2]
    assert "".join(scan.outside).replace("\n", "") == "xy"
    assert structure_status(scan) == "extra_text"
    with pytest.raises(ValueError, match="pair up"):
        structure_status(scan_blocks(f"<{U}>", STEP_TAGS))
    with pytest.raises(ValueError, match="3 steps"):
        steps_text(["a", "b"])


# --------------------------------------------------------------------------- the re-ranking parser
def answer(explanation: str | None, order=(0, 1, 2, 3)) -> str:
    obj = {"recommendations": [SIDS[i] for i in order]}
    if explanation is not None:
        obj = {"explanation": explanation, **obj}
    return json.dumps(obj)


@pytest.mark.parametrize(("explanation", "steps", "reasoning_ok"), [
    (GOOD, "ok", True),
    (steps_text(["a", "b", "c"], sep="\n"), "ok", True),  # newlines inside the JSON string
    ("The user buys shampoo; conditioner next.", "missing_step", False),  # free text
    (block(I, "b") + block(U, "a") + block(C, "c"), "out_of_order", False),
    (block(U, "a") + block(I, "b"), "missing_step", False),
    (block(U, "a") + block(I, "  ") + block(C, "c"), "missing_step", False),
    ("Sure! " + GOOD, "extra_text", False),
    (GOOD + block(C, "again"), "repeated", False),
    (f"<{U}>a<{I}>b</{I}></{U}>" + block(C, "c"), "malformed", False),
    ("", "missing_step", False),
    (None, "missing_step", False),
])
def test_think_format_checks_the_explanation_not_the_ranking(explanation, steps, reasoning_ok):
    for require in (True, False):
        r = parse_output(answer(explanation), SIDS, require_explanation=require, reasoning_format="think")
        assert r.steps_status == steps and r.reasoning_ok is reasoning_ok
        ranking_ok = not (require and not (explanation or "").strip())
        assert r.ok is ranking_ok and r.repaired == [0, 1, 2, 3], "the ranking is read whatever the steps"
        free = parse_output(answer(explanation), SIDS, require_explanation=require)
        assert free.steps_status is None and free.status == r.status
        assert free.reasoning_ok is bool((explanation or "").strip()), "free text: any non-empty explanation"


def test_unreadable_answers_and_arguments():
    r = parse_output("no json at all", SIDS, reasoning_format="think")
    assert r.status == "wrong_format" and r.steps_status == "missing_step" and not r.reasoning_ok
    with pytest.raises(ValueError, match="reasoning_format"):
        parse_output(answer(GOOD), SIDS, reasoning_format="tagged")


def test_the_guarded_fallback_is_not_reasoning_ok(monkeypatch):
    import gr2.prompts.parse as parse_mod

    def boom(*a, **k):
        raise RuntimeError

    monkeypatch.setattr(parse_mod, "_parse", boom)
    r = parse_output(answer(GOOD), SIDS, reasoning_format="think")
    assert r.status == "wrong_format" and r.steps_status == "missing_step" and not r.reasoning_ok


def test_steps_counts():
    results = [parse_output(answer(e), SIDS, reasoning_format="think") for e in (GOOD, GOOD, "free", None)]
    assert steps_counts(results) == {**dict.fromkeys(STEP_STATUSES, 0), "ok": 2, "missing_step": 2}
    assert steps_counts([parse_output(answer(GOOD), SIDS)]) == {}


# --------------------------------------------------------------------------- the prompt
def test_the_think_prompt_asks_for_the_three_tagged_steps():
    for instructions in ("full", "short"):
        think = system_message(PromptConfig(reasoning_format="think", instructions=instructions))
        positions = [think.find(f"<{t}>") for t in STEP_TAGS]
        assert -1 not in positions and positions == sorted(positions), instructions
        assert all(f"</{t}>" in think for t in STEP_TAGS)
        free = system_message(PromptConfig(instructions=instructions))
        assert not any(f"<{t}>" in free for t in STEP_TAGS)
        ranking_only = system_message(PromptConfig(reasoning_format="think", reasoning=False,
                                                   instructions=instructions))
        assert ranking_only == system_message(PromptConfig(reasoning=False, instructions=instructions))
    with pytest.raises(ValueError, match="reasoning_format"):
        PromptConfig(reasoning_format="steps")


def test_a_rendered_prompt_parses_in_its_own_format():
    from gr2.prompts.render import ItemText

    items = [ItemText(i, s) for i, s in enumerate(SIDS)]
    think = build_messages(items[:1], items, PromptConfig(reasoning_format="think", order="prerank"))
    target = assistant_text(GOOD, SIDS)
    assert think.parse(target).steps_status == "ok" and think.parse(target).reasoning_ok
    assert think.parse(assistant_text("free text", SIDS)).steps_status == "missing_step"
    free = build_messages(items[:1], items, PromptConfig(order="prerank"))
    assert free.parse(target).steps_status is None
    no_reasoning = build_messages(items[:1], items, PromptConfig(reasoning_format="think", reasoning=False))
    assert no_reasoning.reasoning_format == "free" and no_reasoning.parse(answer(None)).steps_status is None
