"""The rating task's prompt and parser (gr2.prompts.rating): every status, and the prompt's content."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr2.prompts.rating import (
    STATUSES,
    STEPS,
    answer_text,
    parse_rating,
    rating_messages,
)

GOOD = {"user_interests": "Likes dramas, dislikes horror.", "item_features": "A 1990s drama.",
        "compatibility": "A good fit."}


def test_a_full_answer_is_ok_with_its_steps_and_rating():
    p = parse_rating(answer_text(GOOD, 4))
    assert p.status == "ok" and p.format_ok and p.rating == 4.0
    assert dict(p.steps) == {k: v.strip() for k, v in GOOD.items()}
    assert parse_rating("\n  " + answer_text(GOOD, "3.5") + "\n").rating == 3.5  # whitespace around is fine


@pytest.mark.parametrize("rating,status", [
    ("0", "out_of_range"), ("6", "out_of_range"), ("-1", "out_of_range"), ("1e9", "out_of_range"),
    ("5.0001", "out_of_range"), ("1e999", "out_of_range"), ("NaN", "not_a_number"), ("nan", "not_a_number"),
    ("inf", "not_a_number"), ("four", "not_a_number"), ("4/5", "not_a_number"), ("3 or 4", "not_a_number"),
    ("4 stars", "not_a_number"), ("", "not_a_number"), ("1", "ok"), ("5", "ok"), (" 4. ", "ok"), ("2.75", "ok"),
])
def test_rating_values(rating, status):
    p = parse_rating(answer_text(GOOD, rating))
    assert p.status == status
    assert (p.rating is None) == (status not in ("ok",))


@pytest.mark.parametrize("text,status", [
    ("I think 4.", "missing_rating"),
    (answer_text(GOOD, 4).replace("<rating>4</rating>", ""), "missing_rating"),
    ("<rating>4</rating>", "missing_step"),
    (answer_text({**GOOD, "item_features": "   "}, 4), "missing_step"),
    (answer_text({**GOOD, "compatibility": "..."}, 4), "missing_step"),  # no word in it
    ("<item_features>a</item_features><user_interests>b</user_interests><compatibility>c</compatibility>"
     + "<rating>4</rating>", "out_of_order"),
    ("<rating>4</rating>" + answer_text(GOOD, 4).split("<rating>")[0], "out_of_order"),
    ("Sure! " + answer_text(GOOD, 4), "extra_text"),
    (answer_text(GOOD, 4) + " Hope this helps.", "extra_text"),
    (answer_text(GOOD, 4) + "<rating>5</rating>", "repeated"),
    (answer_text(GOOD, 4).replace("<rating>4</rating>", "<rating>4</rating><rating>2</rating>"), "repeated"),
    ("<rating><rating>4</rating></rating>", "repeated"),
    (answer_text(GOOD, 4).replace("</compatibility>", ""), "malformed"),  # left open
    ("</rating>" + answer_text(GOOD, 4), "malformed"),
    ("<user_interests>x <rating>4</rating></user_interests>", "malformed"),  # nested
    (answer_text(GOOD, 4)[:-len("</rating>")], "malformed"),  # cut off before the close
])
def test_structure_statuses(text, status):
    p = parse_rating(text)
    assert p.status == status
    assert p.status in STATUSES and not p.format_ok


def test_a_rating_is_still_read_when_only_the_format_is_wrong():
    assert parse_rating("<rating>4</rating>").rating == 4.0  # missing steps
    assert parse_rating("Sure! " + answer_text(GOOD, 2)).rating == 2.0  # extra text
    assert parse_rating(answer_text(GOOD, 4) + "<rating>5</rating>").rating is None  # hedged: none counts


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/ratingusemfcopbly_ 0123456789.\n")), max_size=200))
def test_any_text_parses_to_a_status_and_a_rating_only_in_range(text):
    p = parse_rating(text)
    assert p.status in STATUSES
    assert p.rating is None or 1 <= p.rating <= 5


def test_prompt_shows_history_ratings_the_item_and_the_format_without_an_example_rating():
    msgs = rating_messages([("Heat (1995)", ["Action", "Crime"], 5.0), ("Clueless (1995)", [], 2.0)],
                           ("Casino (1995)", ["Drama"]), noun="movie")
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert [m["role"] for m in msgs] == ["system", "user"]
    for name, _ in STEPS:
        assert f"<{name}>" in system and f"</{name}>" in system
    assert system.index("<user_interests>") < system.index("<item_features>") < system.index("<compatibility>") \
        < system.index("<rating>")
    assert parse_rating(system.split("structure:\n")[1]).status == "not_a_number"  # placeholders only
    assert "1. Heat (1995) [Action, Crime]: 5" in user and "2. Clueless (1995): 2" in user
    assert user.endswith("Movie to rate: Casino (1995) [Drama]")
