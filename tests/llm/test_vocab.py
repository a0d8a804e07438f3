"""SID vocabulary on a tiny random llama and a tiny BPE tokenizer built offline in the test."""

from __future__ import annotations

import pytest
import tiny_llm
import torch

from gr2.llm.vocab import (
    add_sid_tokens,
    codes_to_ids,
    sid_id_table,
    sid_special_ids,
    sid_token_ids,
    sid_tokens,
)
from gr2.prompts.sids import SID_BEGIN, SID_END, parse_sid, render_sid

CORPUS = [
    "Neutrogena Hydro Boost moisturizer for dry skin",
    "CeraVe Moisturizing Cream for dry skin",
    "shampoo then conditioner then styling gel",
    "the user bought item 97 and item 168 < > _ s a b c d",
    "0 1 2 3 4 5 6 7 8 9 10 42 97 135 137 168 255",
] * 3


def make_tokenizer():
    return tiny_llm.make_tokenizer(CORPUS, vocab_size=320)


def make_model(vocab_size: int, tied: bool = True):
    return tiny_llm.make_model(vocab_size, tied=tied, max_positions=64)


@pytest.fixture
def tok():
    return make_tokenizer()


def _is_tied(model) -> bool:
    return model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_sid_tokens_order_and_letters():
    toks = sid_tokens()
    assert len(toks) == 4 * 256 + 2
    assert toks[:2] == ["<s_a_0>", "<s_a_1>"] and toks[255] == "<s_a_255>" and toks[256] == "<s_b_0>"
    assert toks[-3] == "<s_d_255>" and toks[-2:] == [SID_BEGIN, SID_END]
    assert len(set(toks)) == len(toks)
    five = sid_tokens(levels=5, codebook_size=8)
    assert five[32:40] == [f"<s_e_{i}>" for i in range(8)] and len(five) == 42
    with pytest.raises(ValueError):
        sid_tokens(levels=0)
    with pytest.raises(ValueError):
        sid_tokens(codebook_size=0)


def test_add_tokens_single_ids_and_roundtrip(tok):
    model = make_model(len(tok))
    old_len = len(tok)
    added = add_sid_tokens(model, tok, levels=4, codebook_size=256)
    assert added == 1026 and len(tok) == old_len + 1026
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert model.get_output_embeddings().weight.shape[0] == len(tok)
    assert model.config.vocab_size == len(tok)
    for t in sid_tokens():  # every SID token is exactly one id and decodes back
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (t, ids)
        assert tok.convert_ids_to_tokens(ids) == [t] and tok.decode(ids) == t
    table = sid_id_table(tok)
    assert len(table) == 4 and all(len(row) == 256 for row in table)
    assert len({i for row in table for i in row}) == 1024
    begin, end = sid_special_ids(tok)

    codes = (97, 168, 137, 135)
    body = render_sid(codes)
    ids = tok(body, add_special_tokens=False)["input_ids"]
    assert ids == [table[level][c] for level, c in enumerate(codes)]
    wrapped = render_sid(codes, wrap=True)
    ids = tok(wrapped, add_special_tokens=False)["input_ids"]
    assert ids == [begin] + [table[level][c] for level, c in enumerate(codes)] + [end]
    assert ids == sid_token_ids(tok, wrapped) == codes_to_ids(tok, codes)
    assert parse_sid(tok.decode(ids)) == codes

    # Inside text: the SID stays whole, the text around it is tokenised as before, and decoding
    # with skip_special_tokens=True keeps the SID (the tokens are added, not special).
    text = f"I bought {wrapped} for dry skin"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert sum(i in set(sid_token_ids(tok, wrapped)) for i in ids) == 6
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
    # The forward pass and a backward pass reach the new rows.
    model.train()
    out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]))
    out.loss.backward()
    grad = model.get_input_embeddings().weight.grad
    assert grad[sid_token_ids(tok, wrapped)].abs().sum() > 0


def test_mean_init_documented_and_seeded(tok):
    model = make_model(len(tok), tied=False)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    n_old = old_in.shape[0]
    add_sid_tokens(model, tok, levels=2, codebook_size=64, noise_std=0.1, seed=3)
    new_in = model.get_input_embeddings().weight.detach()
    new_out = model.get_output_embeddings().weight.detach()
    assert torch.equal(new_in[:n_old], old_in) and torch.equal(new_out[:n_old], old_out)  # old rows untouched
    for new, old in ((new_in[n_old:], old_in), (new_out[n_old:], old_out)):
        assert new.shape[0] == 130
        # mean of the existing rows + noise of 0.1 × their per-dimension std
        assert torch.allclose(new.mean(0), old.mean(0), atol=3 * 0.1 * old.std(0).max() / 130 ** 0.5 + 1e-6)
        ratio = (new - old.mean(0)).std(0) / old.std(0)
        assert 0.07 < ratio.mean().item() < 0.13
        assert torch.unique(new, dim=0).shape[0] == 130  # all distinct
    assert not torch.equal(new_in[n_old:], new_out[n_old:])  # untied: separate draws
    assert not _is_tied(model)

    again = make_model(n_old, tied=False)
    add_sid_tokens(again, make_tokenizer(), levels=2, codebook_size=64, noise_std=0.1, seed=3)
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
    other = make_model(n_old, tied=False)
    add_sid_tokens(other, make_tokenizer(), levels=2, codebook_size=64, noise_std=0.1, seed=4)
    assert not torch.equal(other.get_input_embeddings().weight[n_old:], new_in[n_old:])


def test_text_init_is_mean_of_pieces(tok):
    model = make_model(len(tok))
    old = model.get_input_embeddings().weight.detach().clone()
    pieces = {t: tok(t, add_special_tokens=False)["input_ids"] for t in sid_tokens(2, 16)}
    assert all(len(p) > 1 for p in pieces.values())
    add_sid_tokens(model, tok, levels=2, codebook_size=16, init="text")
    weight = model.get_input_embeddings().weight.detach()
    for t, ids in pieces.items():
        (tid,) = tok(t, add_special_tokens=False)["input_ids"]
        assert torch.allclose(weight[tid], old[ids].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="init"):
        add_sid_tokens(model, tok, init="random")


def test_catalogue_init_is_what_the_items_carrying_a_code_are_about(tok):
    catalogue = [("<s_a_1><s_b_2>", "Neutrogena Hydro Boost moisturizer for dry skin"),
                 ("<s_a_1><s_b_3>", "CeraVe Moisturizing Cream for dry skin"),
                 ("<s_a_2><s_b_2>", "shampoo then conditioner then styling gel")]
    model = make_model(len(tok))
    old = model.get_input_embeddings().weight.detach().clone()
    pieces = [tok(text, add_special_tokens=False)["input_ids"] for _, text in catalogue]
    add_sid_tokens(model, tok, levels=2, codebook_size=4, init="catalogue", catalogue=catalogue)
    weight = model.get_input_embeddings().weight.detach()
    row = {t: weight[tok(t, add_special_tokens=False)["input_ids"][0]] for t in sid_tokens(2, 4)}
    items = torch.stack([old[p].mean(0) for p in pieces])
    centre, items_centre = old.mean(0), items.mean(0)
    spread = (old - centre).norm(dim=1).median()
    for token, members in (("<s_a_1>", [0, 1]), ("<s_a_2>", [2]), ("<s_b_2>", [0, 2]), ("<s_b_3>", [1])):
        dev = items[members].mean(0) - items_centre
        # the direction of the items' mean, at the spread of the existing rows, around their centre
        assert torch.allclose(row[token], centre + dev * spread / dev.norm(), atol=1e-5)
    # the skin-care code is closer to the skin-care item than to the shampoo
    cos = torch.nn.functional.cosine_similarity
    assert cos(row["<s_a_1>"] - centre, items[0] - items_centre, 0) > cos(row["<s_a_1>"] - centre, items[2] - items_centre, 0)
    # a code no item carries starts at the mean (plus noise), as with init="mean"
    assert (row["<s_a_3>"] - centre).norm() < 0.5 * spread
    with pytest.raises(ValueError, match="catalogue"):
        add_sid_tokens(make_model(len(make_tokenizer())), make_tokenizer(), init="catalogue")


def test_idempotent_and_tied_stay_tied(tok):
    model = make_model(len(tok), tied=True)
    assert _is_tied(model)
    assert add_sid_tokens(model, tok) == 1026
    assert _is_tied(model)
    size, snapshot = len(tok), model.get_input_embeddings().weight.detach().clone()
    assert add_sid_tokens(model, tok) == 0
    assert add_sid_tokens(model, tok, init="text") == 0
    assert len(tok) == size and torch.equal(model.get_input_embeddings().weight, snapshot)
    assert _is_tied(model)
    # A larger level count adds only the new level.
    assert add_sid_tokens(model, tok, levels=5) == 256
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == size + 256
    assert torch.equal(model.get_input_embeddings().weight[:size], snapshot)
    assert _is_tied(model)


def test_embedding_matrix_larger_than_tokenizer(tok):
    """Like Qwen: spare rows beyond the tokenizer; new ids land inside, nothing to resize."""
    model = make_model(len(tok) + 40)
    added = add_sid_tokens(model, tok, levels=1, codebook_size=8)
    assert added == 10 and model.get_input_embeddings().weight.shape[0] == len(tok) + 30
    ids = sid_token_ids(tok, render_sid((3,), wrap=True))
    w = model.get_input_embeddings().weight.detach()
    ref = w[: len(tok) - 10]
    assert torch.allclose(w[ids].mean(0), ref.mean(0), atol=0.05)


def test_save_and_reload_keeps_tokens(tok, tmp_path):
    model = make_model(len(tok))
    add_sid_tokens(model, tok, levels=4, codebook_size=32)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    s = render_sid((1, 2, 3, 4), wrap=True)
    assert tok2(s, add_special_tokens=False)["input_ids"] == sid_token_ids(tok, s)
    assert add_sid_tokens(model2, tok2, levels=4, codebook_size=32) == 0
    assert torch.equal(model2.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_sid_token_ids_errors(tok):
    with pytest.raises(KeyError, match="add_sid_tokens"):
        sid_token_ids(tok, "<s_a_1><s_b_2>")
    model = make_model(len(tok))
    add_sid_tokens(model, tok, levels=2, codebook_size=4)
    assert len(sid_token_ids(tok, " <s_a_1><s_b_2> ")) == 2
    with pytest.raises(KeyError):
        sid_token_ids(tok, "<s_a_9>")  # beyond the codebook
    for bad in ("", "<s_a_1> <s_b_2>", "x<s_a_1>", "<s_a_1>y", "s_a_1"):
        with pytest.raises(ValueError):
            sid_token_ids(tok, bad)
