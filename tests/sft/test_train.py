"""The weighted SFT loss on a tiny random llama: equals a hand-computed weighted NLL, λ_r = 0 makes the
reasoning labels irrelevant, λ = 1 is TRL's own loss; a 2-step run writes the model and resumes."""

from __future__ import annotations

import json

import pytest
import tiny_llm
import torch
from datasets import Dataset

from gr2.runs import RunDir
from gr2.sft.config import SFTConfig
from gr2.sft.train import PARTS, WeightedSFTTrainer, encode_examples, train_sft
from gr2.sft.weights import REASONING
from gr2.training.loop import sft_args

from .conftest import make_examples


def _cfg(**kw) -> SFTConfig:
    base = dict(steps=2, batch_size=2, save_steps=1, logging_steps=1, lr=1e-3, device="cpu", max_seq_len=256)
    base.update(kw)
    return SFTConfig(**base)


def _trainer(model, tok, tmp_path, lr=0.5, lo=1.0, n=3, reasoning=True):
    rows, _ = encode_examples(tok, make_examples(n, reasoning), 256)
    args = sft_args(_cfg(), tmp_path / "ck", 1, 1e-3, 0.0, 0.0, "cpu")
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                                 lambda_reasoning=lr, lambda_ranking=lo)
    trainer.model.train()
    return trainer


def _batch(trainer, n=3):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def _hand_loss(model, batch, weights):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    nll = -torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    w = torch.tensor(weights)[batch[PARTS][:, 1:]]
    return (w * nll * mask).sum() / mask.sum()


@pytest.mark.parametrize("lr, lo", [(0.5, 1.0), (0.0, 1.0), (0.3, 2.0)])
def test_loss_is_the_weighted_nll(model, tok, tmp_path, lr, lo):
    trainer = _trainer(model, tok, tmp_path, lr, lo)
    batch = _batch(trainer)
    assert batch[PARTS].shape == batch["labels"].shape and (batch[PARTS] == REASONING).any()
    expected = _hand_loss(trainer.model, batch, (0.0, lr, lo))
    loss = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)
    logged = trainer._metrics["train"]
    assert set(logged) >= {"nll_reasoning", "nll_ranking", "loss_reasoning", "loss_ranking"}
    assert logged["loss_reasoning"][-1] + logged["loss_ranking"][-1] == pytest.approx(loss.detach().item(), abs=1e-5)


def test_unit_weights_equal_trl_loss(model, tok, tmp_path):
    from trl import SFTTrainer

    trainer = _trainer(model, tok, tmp_path, 1.0, 1.0)
    batch = _batch(trainer)
    plain = SFTTrainer(model=trainer.model, args=trainer.args, train_dataset=trainer.train_dataset, processing_class=tok)
    plain_batch = {k: v for k, v in batch.items() if k != PARTS}
    assert torch.allclose(trainer.compute_loss(trainer.model, dict(batch)), plain.compute_loss(plain.model, plain_batch))


def _grads(trainer, batch):
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, dict(batch)).backward()
    return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("lr, same", [(0.0, True), (0.5, False)])
def test_zero_reasoning_weight_ignores_reasoning_labels(model, tok, tmp_path, lr, same):
    trainer = _trainer(model, tok, tmp_path, lr, 1.0)
    batch = _batch(trainer)
    changed = dict(batch)
    reasoning = batch[PARTS] == REASONING
    changed["labels"] = torch.where(reasoning, (batch["labels"] + 7) % len(tok), batch["labels"])
    g1, g2 = _grads(trainer, batch), _grads(trainer, changed)
    assert len(g1) == len(g2) > 0
    equal = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g1, g2))
    assert equal is same


def test_no_reasoning_completions_train_ranking_only(model, tok, tmp_path):
    trainer = _trainer(model, tok, tmp_path, 0.0, 1.0, reasoning=False)
    batch = _batch(trainer)
    assert not (batch[PARTS] == REASONING).any()
    assert torch.allclose(trainer.compute_loss(trainer.model, dict(batch)), _hand_loss(trainer.model, batch, (0, 0, 1)))


def test_unsupported_settings_rejected(model, tok, tmp_path):
    rows, _ = encode_examples(tok, make_examples(2), 256)
    args = sft_args(_cfg(), tmp_path / "ck", 1, 1e-3, 0.0, 0.0, "cpu")
    args.loss_type = "dft"
    with pytest.raises(ValueError, match="dft"):
        WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                           lambda_reasoning=0.5, lambda_ranking=1.0)


def test_two_steps_write_the_model_then_resume(model, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    metrics = train_sft(model, tok, make_examples(4), _cfg(), out)
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    assert (out / "checkpoints" / "checkpoint-2").exists() and any((out / "tb").iterdir())
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 2 and saved["resumed_from"] is None and saved["data"]["examples"] == 4
    assert saved["data"]["reasoning_tokens"] > 0 and saved["data"]["ranking_tokens"] > 0
    for key in ("loss", "nll_reasoning", "nll_ranking", "loss_reasoning", "loss_ranking"):
        assert saved[f"{key}_start"] is not None and saved[f"{key}_end"] is not None
    assert saved["tokens_per_second"] > 0 and metrics["steps"] == 2
    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    w0 = tiny_llm.make_model(len(tok), max_positions=1024).model.layers[0].mlp.down_proj.weight
    assert not torch.equal(w0, trained.model.layers[0].mlp.down_proj.weight)

    # an "interrupted" longer schedule resumes from the last checkpoint
    (out / "model" / "config.json").unlink()
    fresh = tiny_llm.make_model(len(tok), max_positions=1024)
    metrics = train_sft(fresh, tok, make_examples(4), _cfg(steps=3, save_steps=100), out)
    assert metrics["resumed_from"] == "checkpoint-2" and metrics["steps"] == 3
    assert [h["step"] for h in metrics["log"]] == [1, 2, 3]
    assert (out / "model" / "config.json").exists()


def test_run_sft_from_the_midtrain_model_with_lora(model, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    from gr2.sft.stage import run_sft

    run = RunDir(tmp_path / "run")
    model.save_pretrained(run.stage_dir("midtrain") / "model")
    tok.save_pretrained(run.stage_dir("midtrain") / "model")
    lines = [json.dumps(ex) for ex in make_examples(3)]
    (run.stage_dir("traces") / "accepted.jsonl").write_text("\n".join(lines) + "\n")
    summary = run_sft(run, _cfg(steps=1, lora=True, lora_r=2, lora_alpha=4))
    out = run.path / "sft"
    assert summary["steps"] == 1 and summary["examples"] == 3
    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    assert not any("lora" in k for k in trained.state_dict())  # merged
    assert not torch.equal(trained.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight)
    assert json.loads((out / "metrics.json").read_text())["init"] == "midtrain"
    assert not (out / "checkpoints").exists()


def test_examples_whose_prompt_fills_max_len_are_dropped(tok, tmp_path):
    examples = make_examples(2)
    rows, stats = encode_examples(tok, examples, 8)
    assert rows == [] and stats["truncated"] == stats["prompt_too_long"] == 2
    with pytest.raises(ValueError, match="max_seq_len=8"):
        train_sft(None, tok, examples, SFTConfig(max_seq_len=8, device="cpu"), tmp_path)


def test_max_examples_trains_on_a_seeded_sample_of_the_traces(model, tok, tmp_path):
    from gr2.checks import ConfigError
    from gr2.config import load_config
    from gr2.sft.stage import run_sft, sample_traces

    traces = [{"example_id": str(i)} for i in range(10)]
    sample = sample_traces(traces, 4, seed=0)
    assert len(sample) == 4 and sample == sorted(sample, key=lambda t: int(t["example_id"])), "file order kept"
    assert sample == sample_traces(traces, 4, seed=0) and sample != sample_traces(traces, 4, seed=1)
    assert sample_traces(traces, None, 0) == traces == sample_traces(traces, 10, 0) == sample_traces(traces, 99, 0)
    assert set(map(str, range(10))) == {t["example_id"] for s in range(20) for t in sample_traces(traces, 2, s)}
    with pytest.raises(ConfigError, match="max_examples must be >= 1"):
        load_config(None, ["sft.max_examples=0"])
    with pytest.raises(ConfigError, match="listwise_lists"):
        load_config(None, ["sft.objective=listwise", "sft.max_examples=8"])

    run = RunDir(tmp_path / "run")
    model.save_pretrained(run.stage_dir("midtrain") / "model")
    tok.save_pretrained(run.stage_dir("midtrain") / "model")
    (run.stage_dir("traces") / "accepted.jsonl").write_text("".join(json.dumps(ex) + "\n" for ex in make_examples(5)))
    assert run_sft(run, _cfg(steps=1, max_examples=2))["examples"] == 2
    assert json.loads((run.path / "sft" / "metrics.json").read_text())["traces_accepted"] == 5
