"""Tests for gr2.prompts.parse: extraction, classification, repair; property tests with hypothesis."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gr2.prompts.parse import (
    STATUSES,
    ParseResult,
    _parse,
    canonical_sid,
    error_counts,
    identity_rate,
    parse_output,
)

K = 10
SIDS = [f"<s_a_{i * 3}><s_b_{i + 1}><s_c_{200 - i}><s_d_{i}>" for i in range(K)]
SIDS[7] = SIDS[7] + "<s_e_1>"  # a collision level
FOREIGN = "<s_a_999><s_b_1><s_c_2><s_d_3>"
PERM = [3, 0, 9, 1, 2, 8, 4, 7, 6, 5]


def answer(recs, explanation="Step 1: ... Step 2: ... Step 3: ...") -> str:
    obj = {"recommendations": recs} if explanation is None else {"explanation": explanation,
                                                                   "recommendations": recs}
    return json.dumps(obj)


def is_perm(xs, k=K) -> bool:
    return sorted(xs) == list(range(k))


# --------------------------------------------------------------------------- ok answers


def test_plain_json_ok():
    r = parse_output(answer([SIDS[i] for i in PERM]), SIDS)
    assert r.status == "ok" and r.ok
    assert r.order == PERM and r.repaired == PERM
    assert r.explanation.startswith("Step 1")
    assert r.raw_ranking == [SIDS[i] for i in PERM]
    assert (r.n_duplicates, r.n_missing, r.n_foreign) == (0, 0, 0)


def test_fences_and_surrounding_prose():
    body = answer([SIDS[i] for i in PERM])
    for text in (f"```json\n{body}\n```",
                 f"Sure! Here is my ranking:\n```\n{body}\n```\nHope this helps {{:)}}",
                 f"Thinking {{ about it... \n{body} trailing words",
                 f"<think>the user likes {{shampoo}}</think>\n{body}"):
        r = parse_output(text, SIDS)
        assert r.status == "ok", text
        assert r.order == PERM


def test_last_answer_object_wins():
    first = answer([SIDS[i] for i in range(K)])
    last = answer([SIDS[i] for i in PERM])
    assert parse_output(f"draft: {first}\nfinal: {last}", SIDS).order == PERM


def test_trailing_commas_single_quotes_curly_quotes():
    recs = ", ".join(f'"{SIDS[i]}"' for i in PERM)
    t1 = '{"explanation": "x", "recommendations": [' + recs + ',],}'
    assert parse_output(t1, SIDS).order == PERM
    t2 = "{'explanation': 'x', 'recommendations': [" + ", ".join(f"'{SIDS[i]}'" for i in PERM) + "]}"
    assert parse_output(t2, SIDS).order == PERM
    t3 = t1.replace('"', "\u201c", 1)
    assert parse_output(t3, SIDS).order == PERM


def test_sid_tolerance_spaces_and_wrappers():
    recs = []
    for j, i in enumerate(PERM):
        s = SIDS[i]
        if j % 3 == 0:
            s = s.replace("><", "> <")
        elif j % 3 == 1:
            s = f"<|sid_begin|>{s}<|sid_end|>"
        else:
            s = f"  {s} (a title)"
        recs.append(s)
    r = parse_output(answer(recs), SIDS)
    assert r.status == "ok" and r.order == PERM
    wrapped = [f"<|sid_begin|>{s}<|sid_end|>" for s in SIDS]
    assert parse_output(answer(SIDS), wrapped).order == list(range(K))


def test_numbers_refer_to_presented_order():
    presented = [7, 8, 5, 1, 2, 0, 9, 3, 6, 4]
    # the model answers candidate numbers as shown: 1 means presented[0] = pre-rank 7
    r = parse_output(answer(list(range(1, K + 1))), SIDS, presented)
    assert r.status == "ok" and r.order == presented
    r2 = parse_output(answer([str(n) for n in (3, 1, 2, 4, 5, 6, 7, 8, 9, 10)]), SIDS, presented)
    assert r2.order == [5, 7, 8, 1, 2, 0, 9, 3, 6, 4]
    r3 = parse_output(answer(["[1]", "#2", "C3", "candidate 4", 5.0, "6", "7.", "(8)", "9", 10]),
                      SIDS, presented)
    assert r3.status == "ok" and r3.order == presented
    # without presented: the identity
    assert parse_output(answer(list(range(1, K + 1))), SIDS).order == list(range(K))


def test_sids_ignore_presented_mapping():
    presented = [7, 8, 5, 1, 2, 0, 9, 3, 6, 4]
    r = parse_output(answer([SIDS[i] for i in PERM]), SIDS, presented)
    assert r.order == PERM


def test_objects_with_sid_field_and_mixed():
    recs = [{"sid": SIDS[i], "reason": "..."} for i in PERM[:5]] + [SIDS[i] for i in PERM[5:8]] \
        + [{"candidate": PERM[8] + 1}, {"SID": SIDS[PERM[9]]}]
    r = parse_output(answer(recs), SIDS)
    assert r.status == "ok" and r.order == PERM


def test_nested_answer_object():
    text = json.dumps({"answer": {"explanation": "e", "recommendations": [SIDS[i] for i in PERM]}})
    assert parse_output(text, SIDS).order == PERM


def test_ranking_only_variant():
    r = parse_output(answer([SIDS[i] for i in PERM], explanation=None), SIDS, require_explanation=False)
    assert r.status == "ok" and r.explanation is None and r.order == PERM


# --------------------------------------------------------------------------- errors


def test_missing():
    r = parse_output(answer([SIDS[i] for i in PERM[:7]]), SIDS)
    assert r.status == "missing" and r.order is None
    assert r.n_missing == 3 and r.repaired == PERM[:7] + sorted(PERM[7:])


def test_duplicate():
    recs = [SIDS[i] for i in PERM] + [SIDS[PERM[0]]]
    r = parse_output(answer(recs), SIDS)
    assert r.status == "duplicate" and r.n_duplicates == 1 and r.repaired == PERM and r.order is None


def test_foreign():
    for bad in (FOREIGN, "shampoo", 0, 11, -1, 2.5, None, True, [1], {"name": "x"}, SIDS[7][:-7]):
        recs = [SIDS[i] for i in PERM] + [bad]
        r = parse_output(answer(recs), SIDS)
        assert r.status == "foreign", bad
        assert r.n_foreign == 1 and r.repaired == PERM


def test_precedence():
    # duplicate + missing -> duplicate
    r = parse_output(answer([SIDS[0], SIDS[0], SIDS[1]]), SIDS)
    assert r.status == "duplicate" and r.n_missing == 8 and r.n_duplicates == 1
    assert r.repaired == list(range(K))
    # foreign + duplicate + missing -> foreign
    r = parse_output(answer([SIDS[2], FOREIGN, SIDS[2]]), SIDS)
    assert r.status == "foreign" and (r.n_foreign, r.n_duplicates, r.n_missing) == (1, 1, 9)
    assert r.repaired == [2, 0, 1, 3, 4, 5, 6, 7, 8, 9]
    # wrong format (no explanation) + foreign -> wrong_format, counts still reported
    r = parse_output(answer([SIDS[2], FOREIGN], explanation=None), SIDS)
    assert r.status == "wrong_format" and r.n_foreign == 1 and r.repaired[0] == 2


def test_explanation_required():
    recs = [SIDS[i] for i in PERM]
    for expl in (None, "", "   ", 5):
        text = json.dumps({"recommendations": recs} if expl is None else
                          {"explanation": expl, "recommendations": recs})
        r = parse_output(text, SIDS)
        assert r.status == "wrong_format" and r.order is None
        assert r.repaired == PERM  # the ranking itself is still used for the repair
        assert parse_output(text, SIDS, require_explanation=False).status == "ok"


@pytest.mark.parametrize("text", ["", "   ", "I cannot help with that.", "{}", "[]", "null",
                                  "{{{{", "}}}", '{"recommendations": 5}', '{"recommendations": null}',
                                  '{"explanation": "e", "recommendations": {"a": 1}}',
                                  '{"ranking": [1, 2, 3]}', "\x00\x01\ufffd", "[" * 5000, "{" * 5000])
def test_garbage_is_wrong_format(text):
    r = parse_output(text, SIDS)
    assert r.status == "wrong_format" and r.order is None and is_perm(r.repaired)


def test_non_string_input():
    for x in (None, 123, b"bytes", ["x"]):
        r = parse_output(x, SIDS)
        assert r.status == "wrong_format" and is_perm(r.repaired)


def test_truncated_json_is_wrong_format_but_repaired_from_text():
    full = answer([SIDS[i] for i in PERM], explanation=f"User bought {SIDS[9]} lately")
    cut = full[: full.index(SIDS[PERM[4]])]  # stops inside the list
    r = parse_output(cut, SIDS)
    assert r.status == "wrong_format" and r.order is None
    # the SIDs after "recommendations" (not the one cited in the explanation) lead the repair
    assert r.repaired[:4] == PERM[:4]
    assert r.repaired[4:] == sorted(set(range(K)) - set(PERM[:4]))
    nums = '{"explanation": "e", "recommendations": [3, 1, 2'
    r = parse_output(nums, SIDS, presented=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert r.status == "wrong_format" and r.repaired[:3] == [7, 9, 8]


def test_no_json_fallback_scans_sids():
    text = f"My ranking: first {SIDS[4]}, then {SIDS[2].replace('><', '> <')} and {FOREIGN}."
    r = parse_output(text, SIDS)
    assert r.status == "wrong_format" and r.repaired[:2] == [4, 2] and is_perm(r.repaired)


def test_recommendations_as_string_is_wrong_format():
    text = json.dumps({"explanation": "e", "recommendations": "".join(SIDS[i] for i in PERM)})
    r = parse_output(text, SIDS)
    assert r.status == "wrong_format" and r.repaired == PERM  # adjacent SIDs split by level restart


def test_collision_level_must_match():
    four = SIDS[7][: -len("<s_e_1>")]
    recs = [SIDS[i] if i != 7 else four for i in range(K)]
    r = parse_output(answer(recs), SIDS)
    assert r.status == "foreign" and r.repaired == [i for i in range(K) if i != 7] + [7]


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        parse_output("x", SIDS, presented=[0, 1, 2])
    with pytest.raises(ValueError):
        parse_output("x", SIDS, presented=[0] * K)


def test_canonical_sid():
    assert canonical_sid(" <|sid_begin|><s_a_1> <s_b_2><|sid_end|> ") == "<s_a_1><s_b_2>"


# --------------------------------------------------------------------------- tallies


def test_error_counts_and_identity_rate():
    presented = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]
    texts = [answer(SIDS), answer(SIDS), answer([SIDS[i] for i in PERM]), "garbage",
             answer(SIDS[:3]), answer(SIDS + [SIDS[0]]), answer([FOREIGN])]
    results = [parse_output(t, SIDS, presented) for t in texts]
    counts = error_counts(results)
    assert counts == {"ok": 3, "wrong_format": 1, "foreign": 1, "duplicate": 1, "missing": 1}
    assert set(counts) == set(STATUSES)
    assert identity_rate(results) == pytest.approx(2 / 3)
    copy = parse_output(answer(list(range(1, K + 1))), SIDS, presented)
    assert identity_rate([copy], relative_to="presented") == 1.0
    assert identity_rate([copy]) == 0.0
    assert math.isnan(identity_rate([parse_output("x", SIDS)]))
    assert error_counts([]) == {s: 0 for s in STATUSES}


# --------------------------------------------------------------------------- properties

def n_examples(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])

entry = st.one_of(
    st.sampled_from(SIDS),
    st.sampled_from(SIDS).map(lambda s: s.replace("><", "> <")),
    st.sampled_from(SIDS).map(lambda s: f"<|sid_begin|>{s}<|sid_end|>"),
    st.just(FOREIGN),
    st.integers(-3, 14),
    st.integers(1, K).map(str),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.none(),
    st.booleans(),
    st.sampled_from(SIDS).map(lambda s: {"sid": s}),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
presented_st = st.permutations(list(range(K)))


def check(r: ParseResult, k: int = K) -> None:
    assert r.status in STATUSES
    assert is_perm(r.repaired, k)
    assert (r.order is not None) == (r.status == "ok")
    if r.order is not None:
        assert r.order == r.repaired and is_perm(r.order, k)
        assert r.n_duplicates == r.n_missing == r.n_foreign == 0
    assert r.n_missing == k - len(set(r.repaired[: k - r.n_missing]))


@n_examples(1000)
@given(recs=st.lists(entry, max_size=16), presented=presented_st,
       expl=st.one_of(st.none(), st.text(max_size=20)), require=st.booleans(),
       wrap=st.sampled_from(["", "```json\n{}\n```", "Answer: {} done", "{}}}", "{{{}"]))
def test_property_generated_json(recs, presented, expl, require, wrap):
    obj = {"recommendations": recs} if expl is None else {"explanation": expl, "recommendations": recs}
    body = json.dumps(obj, allow_nan=True)
    text = wrap.replace("{}", body, 1) if wrap else body
    r = _parse(text, SIDS, list(presented), require)  # the unguarded implementation
    check(r)
    assert parse_output(text, SIDS, presented, require) == r


@n_examples(500)
@given(recs=st.lists(st.integers(0, K - 1), max_size=14), presented=presented_st)
def test_property_classification(recs, presented):
    """Entries naming only candidates: the status follows from the multiset, and order is exact."""
    text = answer([SIDS[i] for i in recs])
    r = _parse(text, SIDS, list(presented), True)
    check(r)
    if len(set(recs)) < len(recs):
        assert r.status == "duplicate"
    elif len(recs) < K:
        assert r.status == "missing"
    else:
        assert r.status == "ok" and r.order == recs
    first = list(dict.fromkeys(recs))
    assert r.repaired[: len(first)] == first


@n_examples(1000)
@given(text=st.lists(st.sampled_from(list('{}[]",:\' \n\\abc0123456789<>_s|')
                                     + ["recommendations", "explanation", "```json"]
                                     + SIDS + [FOREIGN]), max_size=60).map("".join))
def test_property_random_text_never_raises(text):
    check(_parse(text, SIDS, list(range(K)), True))


@n_examples(500)
@given(text=st.text(max_size=200))
def test_property_arbitrary_unicode(text):
    check(_parse(text, SIDS, list(range(K)), True))


@n_examples(200)
@given(k=st.integers(1, 12), data=st.data())
def test_property_any_k(k, data):
    sids = [f"<s_a_{i}><s_b_{i}><s_c_{i}><s_d_{i}>" for i in range(k)]
    recs = data.draw(st.lists(st.one_of(st.sampled_from(sids), st.integers(0, k + 2)), max_size=k + 3))
    presented = data.draw(st.permutations(list(range(k))))
    check(_parse(answer(recs), sids, list(presented), True), k)


def test_single_quoted_parsing_reads_a_bounded_number_of_characters(monkeypatch):
    """Python's literal parser is superlinear on nested input: a crafted answer of nested
    single-quoted objects may hand it at most _LITERAL_BUDGET characters in all."""
    import ast

    from gr2.prompts import parse as parse_mod

    read = []
    real = ast.literal_eval
    monkeypatch.setattr(parse_mod.ast, "literal_eval", lambda s: read.append(len(s)) or real(s))
    crafted = "{'recommendations': [1, 2, {'y': 'a'}], 'z': " * 400 + "0" + "}" * 400
    assert parse_output(crafted, SIDS[:3]).status == "wrong_format"
    assert sum(read) <= parse_mod._LITERAL_BUDGET and max(read, default=0) <= parse_mod._LITERAL_MAX
    # an ordinary single-quoted answer still parses
    read.clear()
    ok = parse_output("{'recommendations': [" + ", ".join(f"'{s}'" for s in SIDS[:3]) + "]}", SIDS[:3])
    assert ok.raw_ranking == SIDS[:3] and read
