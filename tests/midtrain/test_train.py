"""Training on a tiny random llama: warm-up touches only new rows, a 2-step run, resume, TRL masks."""

from __future__ import annotations

import json

import pandas as pd
import torch

from gr2.midtrain.config import MidtrainConfig
from gr2.runs import RunDir

from .conftest import CODEBOOK, LEVELS, make_model, make_tokenizer


def _cfg(model_dir, **kw) -> MidtrainConfig:
    base = dict(model=str(model_dir), n_examples=24, eval_examples_per_task=4, lm_source="catalogue",
                max_history=4, persona_items=3, max_seq_len=96, warmup_steps=1, steps=2, batch_size=2,
                save_steps=1, logging_steps=1, lr=1e-3, device="cpu", eval_batch_size=8)
    base.update(kw)
    return MidtrainConfig(**base)


def _sid_model():
    from gr2.llm.vocab import add_sid_tokens
    from gr2.midtrain.train import new_token_ids

    tok = make_tokenizer()
    model = make_model(len(tok))
    old = len(tok)
    add_sid_tokens(model, tok, levels=LEVELS, codebook_size=CODEBOOK)
    return model, tok, old, new_token_ids(tok, LEVELS, CODEBOOK)


def test_warmup_changes_only_new_rows(tmp_path):
    from gr2.midtrain.train import freeze_all_but_rows, unfreeze
    from gr2.training.loop import run_phase, sft_args

    model, tok, old, new_ids = _sid_model()
    assert new_ids == list(range(old, len(tok)))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    handles = freeze_all_but_rows(model, new_ids)
    text = "<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>"
    train = pd.DataFrame({"task": ["x"] * 4, "prompt": ["Items a user bought: " + text] * 4,
                          "completion": [text + " Shampoo number 1"] * 4})
    cfg = _cfg("unused", batch_size=2, warmup_steps=3)
    args = sft_args(cfg, tmp_path / "ck", 3, 5e-2, 0.0, 0.0, "cpu")
    model, info = run_phase(model, tok, train, args, tmp_path / "tb")
    unfreeze(model, handles)
    assert info["global_step"] == 3 and any((tmp_path / "tb").iterdir())
    after = model.state_dict()
    emb = "model.embed_tokens.weight"
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert torch.equal(after[emb][:old], before[emb][:old])  # old rows untouched (tied: lm_head too)
    assert not torch.equal(after[emb][old:], before[emb][old:])  # new rows trained
    for k, v in after.items():
        if k != emb and k != "lm_head.weight":
            assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in model.parameters())


def test_trl_masks_match_ours(tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer

    from gr2.midtrain.train import tokenize_example
    from gr2.training.loop import sft_args

    model, tok, _, _ = _sid_model()
    rows = [("Items a user bought, oldest first: <|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>\nNext item:",
             "<|sid_begin|><s_a_2><s_b_0><s_c_1><|sid_end|>"),
            ("<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>\nTitle / Categories:", " Shampoo number 4 / Beauty")]
    ds = Dataset.from_dict({"prompt": [r[0] for r in rows], "completion": [r[1] for r in rows]})
    trainer = SFTTrainer(model=model, args=sft_args(_cfg("unused"), tmp_path / "o", 1, 1e-3, 0.0, 0.0, "cpu"),
                         train_dataset=ds, processing_class=tok)
    for i, (p, c) in enumerate(rows):
        ids, mask = tokenize_example(tok, p, c)
        assert trainer.train_dataset[i]["input_ids"] == ids
        labels = trainer.train_dataset[i]["labels"]
        assert labels == [x if m else -100 for x, m in zip(ids, mask)]
    assert sum(tokenize_example(tok, *rows[0])[1]) == LEVELS + 3
    a = trainer.args  # the CPU trap of docs/resources.md
    assert not a.bf16 and not a.activation_checkpointing and not a.gradient_checkpointing and a.use_cpu


def test_run_midtrain_two_steps_then_resume(tiny_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from gr2.midtrain.stage import run_midtrain

    cfg = _cfg(tiny_model_dir, keep_checkpoints=True)
    summary = run_midtrain(tiny_run, cfg)
    out = tiny_run.path / "midtrain"
    assert (out / "model" / "config.json").exists() and (out / "model" / "tokenizer.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phases"]["warmup"]["global_step"] == 1 and metrics["phases"]["main"]["global_step"] == 2
    assert metrics["sid_tokens_added"] == LEVELS * CODEBOOK + 2
    assert set(metrics["loss_after"]) == set(metrics["loss_before"]) and metrics["loss_after"]
    assert summary["steps"] == 3
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    n_old = base.get_input_embeddings().weight.shape[0]
    assert trained.get_input_embeddings().weight.shape[0] == n_old + LEVELS * CODEBOOK + 2
    w0 = base.model.layers[0].mlp.down_proj.weight
    w1 = trained.model.layers[0].mlp.down_proj.weight
    assert not torch.equal(w0, w1)  # full fine-tuning moved the transformer weights
    assert (out / "checkpoints" / "main" / "checkpoint-2").exists()

    # "interrupted" run of a longer schedule: the warm-up is not redone, phase 2 resumes at step 2
    (out / "model" / "config.json").unlink()
    summary = run_midtrain(tiny_run, _cfg(tiny_model_dir, steps=3, save_steps=100))
    metrics = json.loads((out / "metrics.json").read_text())
    assert "warmup" not in metrics["phases"]
    assert metrics["phases"]["main"]["resumed_from"] == "checkpoint-2"
    assert metrics["phases"]["main"]["global_step"] == 3
    assert [h["step"] for h in metrics["phases"]["main"]["log"]] == [1, 2, 3]  # history restored
    assert not (out / "checkpoints").exists() and (out / "model" / "config.json").exists()


def test_run_midtrain_lora(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from gr2.midtrain.stage import run_midtrain

    from .conftest import make_run

    run = make_run(tmp_path / "lora-run")
    cfg = _cfg(tiny_model_dir, lora=True, lora_r=4, lora_alpha=8, warmup_steps=0, steps=2, keep_checkpoints=True)
    run_midtrain(run, cfg)
    trained = AutoModelForCausalLM.from_pretrained(run.path / "midtrain" / "model")
    first = trained.get_input_embeddings().weight.detach().clone()
    assert not any("lora" in k for k in trained.state_dict())  # merged into a plain model
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.equal(base.model.layers[0].self_attn.q_proj.weight, trained.model.layers[0].self_attn.q_proj.weight)
    n_old = base.get_input_embeddings().weight.shape[0]
    from gr2.llm.vocab import add_sid_tokens

    tok = make_tokenizer()
    add_sid_tokens(base, tok, levels=LEVELS, codebook_size=CODEBOOK)  # same seeded init as the stage
    emb0, emb1 = base.get_input_embeddings().weight, trained.get_input_embeddings().weight
    assert torch.equal(emb0[:n_old], emb1[:n_old]) and not torch.equal(emb0[n_old:], emb1[n_old:])
    # resume: one more step from checkpoint-2 keeps the trained SID rows (saved with the adapter)
    (run.path / "midtrain" / "model" / "config.json").unlink()
    run_midtrain(run, _cfg(tiny_model_dir, lora=True, lora_r=4, lora_alpha=8, warmup_steps=0, steps=3, lr=1e-9))
    metrics = json.loads((run.path / "midtrain" / "metrics.json").read_text())
    assert metrics["phases"]["main"]["resumed_from"] == "checkpoint-2"
    again = AutoModelForCausalLM.from_pretrained(run.path / "midtrain" / "model").get_input_embeddings().weight
    assert torch.allclose(again[n_old:], first[n_old:], atol=1e-5)
    assert isinstance(RunDir(run.path).manifest(), dict)
