"""The stage end to end on a tiny run directory with a fake embedder."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from gr2.prompts.sids import parse_sid
from gr2.sid.ablation import run_ablation
from gr2.sid.embed import EmptyTextWarning
from gr2.sid.stage import run_sid
from gr2.sid.tokenizer import assign_new_items, load_tokenizer, min_codebook_size
from gr2.sid.uniqueness import check_unique


def test_run_sid_writes_a_unique_table_and_a_report(tiny_run, tiny_cfg, fake_embed):
    summary = run_sid(tiny_run, tiny_cfg(), embed_fn=fake_embed)
    sid_dir = tiny_run.path / "sid"
    table = pd.read_parquet(sid_dir / "sids.parquet")
    assert list(table.columns) == ["item_id", "codes", "sid"]
    assert table["item_id"].tolist() == list(range(300))
    assert table["sid"].is_unique
    assert all(parse_sid(s) == tuple(c) for s, c in zip(table["sid"], table["codes"]))
    report = json.loads((sid_dir / "report.json").read_text())
    assert report["final"]["uniqueness"] == 1.0 and report["final"]["collisions"] == 0
    for key in ("uniqueness", "collisions", "largest_bucket", "per_level"):
        assert key in report["raw"]
    assert {"codes_used", "perplexity"} <= set(report["raw"]["per_level"][0])
    assert {"mse", "relative"} <= set(report["reconstruction"])
    assert report["seed"] == 0 and "train_s" in report["timings"] and "embed_s" in report["timings"]
    assert report["embedding"]["model"] == "fake-embed-v1"
    assert summary["final_uniqueness"] == 1.0 and "raw_uniqueness" in summary
    assert (sid_dir / "tokenizer.pt").exists()
    assert list((sid_dir / "cache").glob("emb-*.npy"))


def test_two_runs_give_the_same_sids(run_factory, tmp_path, tiny_cfg, fake_embed):
    cfg = tiny_cfg(dead_code_reset=True, contrastive_weight=0.1)
    tables = []
    for name in ("a", "b"):
        run = run_factory(tmp_path / name)
        run_sid(run, cfg, embed_fn=fake_embed)
        tables.append(pd.read_parquet(run.path / "sid" / "sids.parquet"))
    assert tables[0]["sid"].tolist() == tables[1]["sid"].tolist()


def test_contrastive_pairs_counted_from_train_split(tiny_run, tiny_cfg, fake_embed):
    run_sid(tiny_run, tiny_cfg(contrastive_weight=0.1), embed_fn=fake_embed)
    inter = pd.read_parquet(tiny_run.path / "data" / "interactions.parquet")
    expected = int(sum(max(n - 3, 0) for n in inter.groupby("user_id").size()))  # n-2 train items
    report = json.loads((tiny_run.path / "sid" / "report.json").read_text())
    assert report["contrastive_pairs"] == expected


def test_cold_start_keeps_existing_sids(tiny_run, tiny_cfg, fake_embed, make_vectors):
    run_sid(tiny_run, tiny_cfg(), embed_fn=fake_embed)
    table = pd.read_parquet(tiny_run.path / "sid" / "sids.parquet")
    before = [tuple(c) for c in table["codes"]]
    new_texts = [f"New product {i}. Category: Beauty > Nails." for i in range(80)]
    new = assign_new_items(tiny_run.path, fake_embed(new_texts))
    assert len(new) == 80
    check_unique(before + new)
    after = [tuple(c) for c in pd.read_parquet(tiny_run.path / "sid" / "sids.parquet")["codes"]]
    assert after == before
    # the same call twice is deterministic; a second wave stays unique against both
    assert assign_new_items(tiny_run.path / "sid" / "tokenizer.pt", fake_embed(new_texts)) == new
    more = assign_new_items(tiny_run.path, fake_embed(new_texts), existing=before + new)
    check_unique(before + new + more)
    tok, cfg = load_tokenizer(tiny_run.path / "sid" / "tokenizer.pt")
    assert cfg.levels == 3 and tok.learned_levels == 2


def test_cold_start_with_learned_last_level_and_rqkmeans(tiny_run, tiny_cfg, fake_embed):
    run_sid(tiny_run, tiny_cfg(method="rqkmeans", random_last_levels=0), embed_fn=fake_embed)
    before = [tuple(c) for c in pd.read_parquet(tiny_run.path / "sid" / "sids.parquet")["codes"]]
    # the training items themselves, re-added as "new": every one must move or grow
    items = pd.read_parquet(tiny_run.path / "data" / "items.parquet")
    from gr2.sid.embed import render_texts

    texts, _ = render_texts(items)
    new = assign_new_items(tiny_run.path, fake_embed(texts))
    check_unique(before + new)
    assert not set(new) & set(before)


def test_codebook_too_small_is_a_clear_error(tiny_run, tiny_cfg, fake_embed):
    assert min_codebook_size(300, 3) == 7 and min_codebook_size(12101, 4) == 11
    with pytest.raises(ValueError, match=r"codebook_size ≥ 7"):
        run_sid(tiny_run, tiny_cfg(codebook_size=6), embed_fn=fake_embed)


def test_nan_embeddings_are_an_error(tiny_run, tiny_cfg):
    def nan_embed(texts):
        out = np.ones((len(texts), 8), dtype=np.float32)
        out[5] = np.nan
        return out

    with pytest.raises(ValueError, match="NaN or inf"):
        run_sid(tiny_run, tiny_cfg(), embed_fn=nan_embed)


def test_empty_text_falls_back_to_the_id(run_factory, tmp_path, tiny_cfg, fake_embed):
    run = run_factory(tmp_path / "r", empty=4)
    with pytest.warns(EmptyTextWarning, match="4 item"):
        run_sid(run, tiny_cfg(), embed_fn=fake_embed)
    report = json.loads((run.path / "sid" / "report.json").read_text())
    assert report["embedding"]["empty_text_items"] == 4
    assert report["final"]["uniqueness"] == 1.0


def test_ablation_writes_table_and_effects(tiny_run, tiny_cfg, fake_embed):
    cfg = tiny_cfg(epochs=1)
    res = run_ablation(tiny_run, cfg, seeds=(0,), techniques=("ema", "random_last"), epochs=1,
                       embed_fn=fake_embed)
    assert len([r for r in res["rows"] if r["method"] == "rqvae"]) == 4
    assert len([r for r in res["rows"] if r["method"] == "rqkmeans"]) == 2
    assert set(res["effects"]) == {"ema", "random_last"}
    assert res["effects"]["ema"]["paper_uniqueness_pts"] == 66.2
    md = (tiny_run.path / "sid" / "ablation.md").read_text()
    assert "random_last" in md and "| rqvae |" in md
    assert (tiny_run.path / "sid" / "ablation.json").exists()


def test_bad_item_ids_rejected(tiny_run, tiny_cfg, fake_embed):
    from gr2.runs import atomic_write_parquet

    items = pd.read_parquet(tiny_run.path / "data" / "items.parquet")
    atomic_write_parquet(tiny_run.path / "data" / "items.parquet", items.assign(item_id=items["item_id"] + 1))
    with pytest.raises(ValueError, match="dense"):
        run_sid(tiny_run, dataclasses.replace(tiny_cfg()), embed_fn=fake_embed)
