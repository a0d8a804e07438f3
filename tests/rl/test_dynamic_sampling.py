"""Dynamic sampling: the pure group filter and refill loop, then the trainer's merge on a tiny llama."""

from __future__ import annotations

import math
import zlib

import pytest

from gr2.training.dapo import dynamic_sample, informative_groups

NAN = math.nan


def test_informative_groups():
    assert informative_groups([1, 1, 0, 1, NAN, NAN, 2, 2], 2) == [False, True, False, False]
    assert informative_groups([0, NAN, 0.5], 3) == [True]
    assert informative_groups([0.3, 0.3 + 1e-9], 2) == [False]  # equal up to float noise
    with pytest.raises(ValueError):
        informative_groups([1, 2, 3], 2)


class FakeGenerator:
    """Returns prepared reward batches, one per resample round, and records the calls."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.calls: list[int] = []

    def __call__(self, rnd: int):
        self.calls.append(rnd)
        return self.batches.pop(0)


def test_refill_until_full_and_drop_extra_groups():
    first = [0, 0, 1, 2, 5, 5, 3, 3]                 # groups: flat, live, flat, flat → 1 of 4
    gen = FakeGenerator([[1, 1, 2, 2, 0, 1, 4, 4],   # 1 live (group 2)
                         [0, 1, 0, 2, 0, 3, 9, 9]])  # 3 live, only 2 needed
    s = dynamic_sample(first, gen, group_size=2, max_rounds=5)
    assert gen.calls == [1, 2]
    assert s.picks == [[1], [2], [0, 1]] and s.kept == s.target == 4 and s.filled
    assert s.rounds == 2 and s.zero_std_frac == 0.75


def test_refill_failure_keeps_what_is_left():
    gen = FakeGenerator([[1, 1, 1, 1], [2, 2, 0, 5]])
    s = dynamic_sample([0, 0, 0, 1], gen, group_size=2, max_rounds=1)
    assert gen.calls == [1] and s.picks == [[1], []] and s.kept == 1 and not s.filled and s.rounds == 1


def test_no_refill_when_full_or_not_allowed():
    gen = FakeGenerator([])
    assert dynamic_sample([0, 1, 2, 3], gen, 2, max_rounds=3).picks == [[0, 1]]
    s = dynamic_sample([1, 1, 2, 3], gen, 2, max_rounds=0)
    assert gen.calls == [] and s.picks == [[1]] and s.zero_std_frac == 0.5


# --------------------------------------------------------------------------- the trainer's merge
def _trainer(tmp_path, reward_func, prompts, max_rounds=4, **kw):
    from datasets import Dataset

    from gr2.rl.config import RLConfig
    from gr2.training.dapo import DAPOTrainer, grpo_args

    from .conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    cfg = RLConfig(num_generations=2, batch_size=2, steps=1, max_completion_length=5, overlong_buffer=0,
                   device="cpu", **kw)
    return DAPOTrainer(model=make_model(len(tok)), reward_funcs=[reward_func],
                       args=grpo_args(cfg, tmp_path / "ck", "cpu"),
                       train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                       processing_class=tok, max_resample_rounds=max_rounds), tok


def flat_or_live(prompts, completions, **_):
    """0 for prompts starting "flat", a hash of the completion (distinct texts differ) otherwise."""
    return [0.0 if p.startswith("flat") else (zlib.crc32(c.encode()) % 1000) / 1000
            for p, c in zip(prompts, completions)]


PROMPTS = ["flat: the user bought shampoo", "live: the user bought conditioner", "flat: recommend items",
           "live: history of purchases", "flat: candidates in random order", "live: re-rank the candidates"]


def test_trainer_drops_flat_groups_and_refills_with_informative_ones(tmp_path):
    trainer, tok = _trainer(tmp_path, flat_or_live, PROMPTS)
    trainer.model.train()
    batch = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]  # one flat group, one live group
    out = trainer._generate_and_score_completions(batch)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("dapo/")}
    assert metrics["dapo/zero_std_frac"] == 0.5 and metrics["dapo/resample_rounds"] >= 1
    assert metrics["dapo/filled"] == 1.0 and metrics["dapo/kept_frac"] == 1.0
    assert list(out)[0] == "prompt_ids" and out["prompt_ids"].shape[0] == 4
    texts = tok.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    assert all(t.startswith("live") for t in texts)
    assert all(abs(a) > 1e-3 for a in out["advantages"].tolist())
    assert out["prompt_ids"].shape == out["prompt_mask"].shape
    assert out["completion_ids"].shape == out["completion_mask"].shape
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    # left padding of prompts survives the merge: every row ends with a real prompt token
    assert bool(out["prompt_mask"][:, -1].all())


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_trainer_with_nothing_informative_trains_on_inert_rows(tmp_path, grad_accum):
    """One inert row per micro-step (``steps_per_generation = grad_accum``): zero advantage, no loss tokens."""
    trainer, _ = _trainer(tmp_path, lambda prompts, completions, **_: [1.0] * len(prompts), PROMPTS, max_rounds=1,
                          grad_accum=grad_accum)
    trainer.model.train()
    out = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in (0, 0, 1, 1)])
    assert trainer._metrics["train"]["dapo/filled"][-1] == 0.0
    assert trainer._metrics["train"]["dapo/resample_rounds"][-1] == 1.0
    assert "dapo/kept_reward" not in trainer._metrics["train"]
    assert out["advantages"].tolist() == [0.0] * grad_accum and int(out["completion_mask"].sum()) == 0
    assert int(out["num_items_in_batch"]) == 0


def test_a_training_step_on_a_refilled_batch_moves_the_weights(tmp_path):
    import torch

    trainer, _ = _trainer(tmp_path, flat_or_live, PROMPTS, lr=1e-2)
    a = trainer.args  # the CPU trap of docs/resources.md
    assert not a.bf16 and not a.activation_checkpointing and not a.gradient_checkpointing and a.use_cpu
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logs = [h for h in trainer.state.log_history if "dapo/zero_std_frac" in h]
    assert trainer.state.global_step == 1 and logs and logs[0]["dapo/filled"] == 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))


def test_dynamic_sampling_refuses_batch_scaling(tmp_path):
    with pytest.raises(ValueError):
        _trainer_batch_scaled(tmp_path)


def _trainer_batch_scaled(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    from gr2.training.dapo import DAPOTrainer

    from .conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    args = GRPOConfig(output_dir=str(tmp_path / "o"), num_generations=2, per_device_train_batch_size=2,
                      scale_rewards="batch", bf16=False, activation_checkpointing=False, use_cpu=True,
                      report_to="none", max_completion_length=4)
    return DAPOTrainer(model=make_model(len(tok)), reward_funcs=[flat_or_live], args=args,
                       train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]), processing_class=tok)
