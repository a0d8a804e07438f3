"""The listwise objective: its loss, that it trains the very score the eval and the server rank by,
and the sft stage with ``objective: listwise`` and a learning curve."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pandas as pd
import pytest
import torch
from eval.conftest import make_rerank_run
from eval.test_direct import brute_force_scores
from eval.test_rerank import PROMPT, tiny_model_dir

from gr2.llm.rerank import rerank_lists_direct
from gr2.llm.scoring import (
    PositionPrior,
    answer_separator,
    direct_prompt_ids,
    rank_by_scores,
    score_direct,
    sid_path,
)
from gr2.prompts.items import load_item_texts
from gr2.prompts.render import build_messages
from gr2.runs import read_jsonl
from gr2.sft.config import SFTConfig
from gr2.sft.curve import curve_steps
from gr2.sft.listwise import (
    ListwiseTrainer,
    encode_lists,
    listwise_args,
    listwise_loss,
    train_listwise,
)
from gr2.sft.stage import run_sft


# -- the loss (pure) ------------------------------------------------------------------------------
def test_cross_entropy_is_minus_the_log_softmax_of_the_target():
    s = torch.tensor([1.0, 3.0, 0.5])
    loss, parts = listwise_loss([s], [1], [[0.0, 0.0, 0.0]])
    assert loss.item() == pytest.approx(-torch.log_softmax(s, -1)[1].item())
    assert parts == {"ce": pytest.approx(loss.item()), "top1": 1.0, "distill": 0.0}


def test_loss_is_the_mean_over_lists_and_top1_counts_argmax_hits():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0, 5.0])
    loss, parts = listwise_loss([a, b], [0, 1], [[0, 0], [0, 0, 0]])
    expected = (-torch.log_softmax(a, -1)[0] - torch.log_softmax(b, -1)[1]) / 2
    assert loss.item() == pytest.approx(expected.item())
    assert parts["top1"] == 0.5


def test_distillation_is_listnet_against_the_tempered_teacher():
    s, teacher = torch.tensor([0.0, 1.0, 2.0]), [3.0, 1.0, -1.0]
    loss, parts = listwise_loss([s], [2], [teacher], ce_weight=0.0, distill_weight=2.0, temperature=2.0)
    q = torch.softmax(torch.tensor(teacher) / 2.0, -1)
    listnet = -(q * torch.log_softmax(s, -1)).sum()
    assert parts["distill"] == pytest.approx(listnet.item())
    assert loss.item() == pytest.approx(2.0 * listnet.item())


def test_a_non_finite_teacher_score_gets_no_teacher_mass():
    s = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    _, with_inf = listwise_loss([s], [0], [[1.0, 1.0, -math.inf]], ce_weight=0.0, distill_weight=1.0)
    _, two = listwise_loss([s[:2]], [0], [[1.0, 1.0]], ce_weight=0.0, distill_weight=1.0)
    # the teacher puts 1/2 on each of the first two candidates, none on the third
    logp = torch.log_softmax(s.detach(), -1)
    assert with_inf["distill"] == pytest.approx(-(logp[0] + logp[1]).item() / 2)
    assert math.isfinite(two["distill"])


def test_the_loss_pushes_the_target_score_up_and_the_others_down():
    s = torch.zeros(4, requires_grad=True)
    loss, _ = listwise_loss([s], [2], [[0.0] * 4])
    loss.backward()
    assert s.grad[2] < 0 and all(s.grad[i] > 0 for i in (0, 1, 3))


def test_offsets_are_added_to_the_scores_before_the_softmax():
    s, o = torch.tensor([0.0, 1.0, 2.0]), [2.0, 0.0, -1.0]
    loss, parts = listwise_loss([s, s], [0, 0], [[0.0] * 3] * 2, offsets=[o, None])
    with_prior = -torch.log_softmax(s + torch.tensor(o), -1)[0]
    without = -torch.log_softmax(s, -1)[0]
    assert loss.item() == pytest.approx((with_prior + without).item() / 2)
    assert parts["top1"] == 0.5  # argmax of s + o is 0, of s alone is 2


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="no lists"):
        listwise_loss([], [], [])


# -- the score trained is the score served ----------------------------------------------------------
@pytest.fixture
def tiny(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_rerank_run(tmp_path / "run")
    folder = tiny_model_dir(tmp_path)
    return run, folder, AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def test_training_scores_are_the_eval_and_serving_scores_of_the_same_list(tiny, tmp_path):
    run, _, model, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    items = load_item_texts(run)
    examples = encode_lists(tok, lists, items, PROMPT, shuffle=0.0)
    trainer = ListwiseTrainer(model=model, args=listwise_args(SFTConfig(steps=1), tmp_path / "ck", 1, "cpu"),
                              train_dataset=examples, ce_weight=1.0, distill_weight=0.0, temperature=1.0, pad_id=0)
    model.eval()
    _, out = trainer.compute_loss(model, {"lists": examples}, return_outputs=True)
    trained = [s.detach().tolist() for s in out["scores"]]
    direct = dataclasses.replace(PROMPT, reasoning=False, order="prerank")
    for row, ex, scores in zip(lists.itertuples(), examples, trained):
        # the input is built exactly as serving builds it, independently of the encoder
        rendered = build_messages(list(row.history), list(row.candidates), direct, rng_key=row.example_id, items=items)
        sep = answer_separator(tok)
        ids = direct_prompt_ids(tok, rendered.messages)
        paths = [sid_path(tok, sid, direct.sid_wrap, sep) for sid in rendered.candidate_sids]
        assert ex.inputs.ids == ids and ex.inputs.paths == paths
        assert scores == pytest.approx(brute_force_scores(model, tok, ids, paths), abs=1e-4)
        assert ex.target == list(row.labels).index(1)
    assert trained == [pytest.approx(s, abs=1e-5) for s in score_direct(model, [e.inputs for e in examples])]
    orders = [o.result.order for o in rerank_lists_direct(model, tok, lists, items, direct)]
    assert orders == [rank_by_scores(s) for s in trained]


def test_shuffle_share_and_presentation(tiny):
    run, _, _, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    items = load_item_texts(run)
    assert not any(x.shuffled for x in encode_lists(tok, lists, items, PROMPT, shuffle=0.0))
    assert all(x.shuffled for x in encode_lists(tok, lists, items, PROMPT, shuffle=1.0))
    # the candidates' paths (and the target index) stay in pre-rank order whatever is shown
    a, b = encode_lists(tok, lists, items, PROMPT, shuffle=0.0), encode_lists(tok, lists, items, PROMPT, shuffle=1.0)
    assert [x.inputs.paths for x in a] == [x.inputs.paths for x in b]
    assert [x.target for x in a] == [x.target for x in b]
    assert any(x.inputs.ids != y.inputs.ids for x, y in zip(a, b))


def test_a_prior_gives_offsets_to_lists_shown_in_prerank_order_only(tiny):
    run, _, _, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    prior = PositionPrior.estimate(lists["labels"])
    mixed = encode_lists(tok, lists, load_item_texts(run), PROMPT, shuffle=0.5, prior=prior)
    assert {x.shuffled for x in mixed} == {True, False}
    for x in mixed:
        assert x.offsets == (None if x.shuffled else prior.offsets(list(range(len(x.inputs.paths)))))


def test_a_list_without_exactly_one_positive_is_an_error(tiny):
    run, _, _, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    lists.at[0, "labels"] = [0] * len(lists.at[0, "labels"])
    with pytest.raises(ValueError, match="test-0.*exactly one positive"):
        encode_lists(tok, lists, load_item_texts(run), PROMPT)


def test_training_lowers_the_loss_saves_the_model_and_resumes(tiny, tmp_path):
    run, _, model, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    examples = encode_lists(tok, lists, load_item_texts(run), PROMPT, shuffle=0.0)
    cfg = SFTConfig(objective="listwise", steps=12, batch_size=6, lr=3e-2, lr_warmup_ratio=0.0, logging_steps=1,
                    save_steps=6, keep_checkpoints=True)
    metrics = train_listwise(model, tok, examples, cfg, tmp_path / "sft")
    assert metrics["steps"] == 12 and metrics["ce_end"] < metrics["ce_start"]
    assert (tmp_path / "sft" / "model" / "config.json").exists()
    assert json.loads((tmp_path / "sft" / "metrics.json").read_text())["objective"] == "listwise"
    shutil.rmtree(tmp_path / "sft" / "checkpoints" / "checkpoint-12")
    again = train_listwise(model, tok, examples, cfg, tmp_path / "sft")
    assert again["resumed_from"] == "checkpoint-6"


def test_the_prior_trained_with_is_saved_and_added_by_the_eval_in_prerank_order_only(tiny, tmp_path):
    run, _, model, tok = tiny
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    items = load_item_texts(run)
    prior = PositionPrior([0.0, -50.0, -100.0, -150.0, -200.0, -250.0][:len(lists["labels"].iloc[0])])
    examples = encode_lists(tok, lists, items, PROMPT, shuffle=0.0, prior=prior)
    cfg = SFTConfig(objective="listwise", steps=2, batch_size=2, logging_steps=1, save_steps=1,
                    lr_warmup_ratio=0.0, keep_checkpoints=True)
    metrics = train_listwise(model, tok, examples, cfg, tmp_path / "sft", prior=prior)
    saved = PositionPrior.load(tmp_path / "sft" / "model")
    assert saved.log_prior == prior.log_prior and saved.model_scale != 1.0  # the scale is learnt
    assert metrics["position_prior"]["model_scale"] == pytest.approx(saved.model_scale, abs=1e-4)
    # every checkpoint holds the scale reached there, and a resumed run starts from it
    first = PositionPrior.load(tmp_path / "sft" / "checkpoints" / "checkpoint-1")
    assert first.model_scale not in (1.0, saved.model_scale)
    shutil.rmtree(tmp_path / "sft" / "checkpoints" / "checkpoint-2")
    dataclasses.replace(first, model_scale=5.0).save(tmp_path / "sft" / "checkpoints" / "checkpoint-1")
    again = train_listwise(model, tok, examples, cfg, tmp_path / "sft", prior=prior)
    assert again["resumed_from"] == "checkpoint-1"
    # one more step at SCALE_LR moves log(scale) by about 0.05
    assert PositionPrior.load(tmp_path / "sft" / "model").model_scale == pytest.approx(5.0, rel=0.08)
    shown = dataclasses.replace(PROMPT, reasoning=False, order="prerank")
    # a prior this steep outweighs the model: the order shown comes back
    k = len(prior.log_prior)
    with_prior = rerank_lists_direct(model, tok, lists, items, shown, prior=prior)
    assert all(o.result.order == list(range(k)) for o in with_prior)
    # the scores saved (the fusion row's features) stay the model's own
    assert [o.scores for o in with_prior] == [o.scores for o in rerank_lists_direct(model, tok, lists, items, shown)]
    shuffled = dataclasses.replace(shown, order="shuffled")
    plain = rerank_lists_direct(model, tok, lists, items, shuffled)
    assert [o.scores for o in rerank_lists_direct(model, tok, lists, items, shuffled, prior=prior)] == \
        [o.scores for o in plain]


# -- the stage ---------------------------------------------------------------------------------------
def test_sft_stage_with_the_listwise_objective_writes_the_model_and_a_learning_curve(tiny):
    run, folder, _, _ = tiny
    test = pd.read_parquet(run.path / "candidates" / "test.parquet")
    test.assign(split="train").to_parquet(run.path / "candidates" / "train.parquet", index=False)
    test.assign(split="val").to_parquet(run.path / "candidates" / "val.parquet", index=False)
    cfg = SFTConfig(objective="listwise", init=str(folder), steps=4, batch_size=2, listwise_lists=4,
                    curve_lists=3, curve_points=3, logging_steps=1, listwise_position_prior=True)
    summary = run_sft(run, cfg)
    assert PositionPrior.load(run.path / "sft" / "model").log_prior == PositionPrior.estimate(test["labels"]).log_prior
    assert summary["objective"] == "listwise" and summary["examples"] == 4 and summary["steps"] == 4
    curve = read_jsonl(run.path / "sft" / "curve.jsonl")
    assert [p["step"] for p in curve] == [0, 2, 4]
    assert [p["lists_seen"] for p in curve] == [0, 4, 8]
    assert all(0 <= p["N@5"] <= 1 and 0 <= p["R@1"] <= 1 for p in curve)
    assert not (run.path / "sft" / "checkpoints").exists()


def test_curve_steps_include_the_start_and_the_end():
    assert curve_steps(10, 2) == {0, 10}
    assert curve_steps(10, 3) == {0, 5, 10}
    assert curve_steps(2, 5) == {0, 1, 2}


@pytest.mark.parametrize("field,value", [("listwise_shuffle", 1.5), ("listwise_temperature", 0.0),
                                         ("listwise_lists", 0), ("curve_points", 1), ("listwise_ce", -1.0)])
def test_bad_listwise_fields_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_train_top_layers_updates_only_those_layers(tiny, tmp_path):
    import tiny_llm

    run, _, _, tok = tiny
    model = tiny_llm.make_model(len(tok), layers=2, max_positions=4096)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lists = pd.read_parquet(run.path / "candidates" / "test.parquet")
    examples = encode_lists(tok, lists, load_item_texts(run), PROMPT)
    cfg = SFTConfig(objective="listwise", steps=2, batch_size=3, lr=1e-2, train_top_layers=1, save_steps=100)
    train_listwise(model, tok, examples, cfg, tmp_path / "sft")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(n.startswith(("model.layers.1.", "model.norm.")) for n in changed)
    with pytest.raises(ValueError, match="2 decoder layers"):
        train_listwise(model, tok, examples, dataclasses.replace(cfg, train_top_layers=3), tmp_path / "x")
