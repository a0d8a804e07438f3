import pytest

from gr2.prompts.sids import (
    SID_BEGIN,
    SID_END,
    iter_sids,
    parse_sid,
    render_sid,
    sid_token,
    sid_vocabulary,
)


def test_render_matches_paper_format():
    assert render_sid((97, 168, 137, 135)) == "<s_a_97><s_b_168><s_c_137><s_d_135>"
    assert render_sid([1, 2], wrap=True) == f"{SID_BEGIN}<s_a_1><s_b_2>{SID_END}"
    assert render_sid([0, 0, 0, 0, 3]).endswith("<s_e_3>")  # an added level uses the next letter


def test_parse_roundtrip_and_wrapping():
    for codes in [(0,), (97, 168, 137, 135), (1, 2, 3, 4, 5)]:
        assert parse_sid(render_sid(codes)) == codes
        assert parse_sid("  " + render_sid(codes, wrap=True) + "\n") == codes


@pytest.mark.parametrize("bad", ["", "<s_b_1>", "<s_a_1><s_c_2>", "<s_a_1> <s_b_2>", "<s_a_x>",
                                 "<s_a_1>junk", "<s_a_-1>"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_sid(bad)


def test_iter_sids_in_free_text():
    text = "I pick <s_a_1><s_b_2><s_c_3> then <|sid_begin|><s_a_4><s_b_5><|sid_end|>, not <s_b_9>."
    assert list(iter_sids(text)) == [(1, 2, 3), (4, 5)]


def test_tokens_and_vocabulary():
    assert sid_token(25, 3) == "<s_z_3>"
    with pytest.raises(ValueError):
        sid_token(26, 0)
    with pytest.raises(ValueError):
        sid_token(0, -1)
    vocab = sid_vocabulary(2, 3)
    assert vocab == ["<s_a_0>", "<s_a_1>", "<s_a_2>", "<s_b_0>", "<s_b_1>", "<s_b_2>"]
