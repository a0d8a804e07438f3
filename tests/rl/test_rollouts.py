"""How rollouts are sampled (gr2.training.dapo): seeded rollouts depend on the step and the row, not
on the process's random generator; a static KV cache samples what the dynamic one does; the GPU-only
switches (Liger kernels, compiled decoding) are refused or left out cleanly on the CPU."""

from __future__ import annotations

import pytest
import torch

from gr2.checks import ConfigError
from gr2.rl.config import RLConfig

PROMPTS = ["the user bought shampoo", "the user bought conditioner", "recommend items", "history of purchases"]


def _trainer(tmp_path, **kw):
    from datasets import Dataset

    from gr2.training.dapo import DAPOTrainer, grpo_args

    from .conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    seeded = kw.pop("seeded_rollouts", False)
    cfg = RLConfig(num_generations=2, batch_size=2, steps=1, max_completion_length=8, overlong_buffer=0,
                   device="cpu", temperature=1.5, seeded_rollouts=seeded, **kw)
    return DAPOTrainer(model=make_model(len(tok)), reward_funcs=[lambda prompts, **_: [0.0] * len(prompts)],
                       args=grpo_args(cfg, tmp_path / "ck", "cpu"),
                       train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
                       processing_class=tok, dynamic_sampling=False, seeded_rollouts=seeded)


def completions(trainer, global_seed: int) -> list[list[int]]:
    """The completion ids sampled for one batch (two prompts × G = 2) after seeding the global generator."""
    trainer.model.train()
    torch.manual_seed(global_seed)
    out = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in (0, 0, 1, 1)])
    return [row[mask.bool()].tolist() for row, mask in zip(out["completion_ids"], out["completion_mask"])]


def test_seeded_rollouts_ignore_the_global_generator_and_follow_the_step(tmp_path):
    trainer = _trainer(tmp_path, seeded_rollouts=True)
    first = completions(trainer, 0)
    assert completions(trainer, 1) == first  # another global seed: the same rollouts
    assert first[0] != first[1] or first[2] != first[3]  # the two rows of a group draw apart
    trainer.state.global_step = 1
    assert completions(trainer, 0) != first  # the next step draws new ones
    free = _trainer(tmp_path)  # the control: transformers' sampler follows the global generator
    assert completions(free, 0) != completions(free, 1)


def test_a_static_cache_samples_what_the_dynamic_cache_samples(tmp_path):
    static = _trainer(tmp_path, seeded_rollouts=True, rollout_cache="static")
    assert static.generation_config.cache_implementation == "static"
    assert completions(static, 0) == completions(_trainer(tmp_path, seeded_rollouts=True), 0)


def test_rollout_cache_arguments():
    from gr2.training.dapo import rollout_cache

    assert rollout_cache("dynamic", "cuda") == {}
    assert rollout_cache("static", "cpu") == {"cache_implementation": "static"}
    assert rollout_cache("static", "cuda:1") == {"cache_implementation": "static",
                                                 "generation_kwargs": {"disable_compile": False}}
    with pytest.raises(ValueError, match="rollout_cache"):
        RLConfig(rollout_cache="paged")


def test_seeded_rollouts_are_refused_with_vllm():
    with pytest.raises(ValueError, match="seeded_rollouts"):
        RLConfig(reasoning=True, seeded_rollouts=True, use_vllm=True)


def test_liger_kernels_are_refused_without_cuda():
    from gr2.training.setup import start_training

    with pytest.raises(ConfigError, match="liger_kernels=true needs a CUDA device"):
        start_training(RLConfig(device="cpu", liger_kernels=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Liger's Triton kernels need CUDA")
def test_liger_kernels_reach_the_trainer_on_cuda(tmp_path):
    pytest.importorskip("liger_kernel")
    from gr2.training.dapo import grpo_args

    assert grpo_args(RLConfig(liger_kernels=True), tmp_path, "cuda").use_liger_kernel


def test_training_switches_reach_the_trainer_arguments(tmp_path):
    from gr2.training.dapo import grpo_args

    args = grpo_args(RLConfig(torch_compile=True), tmp_path, "cpu")
    assert args.torch_compile and not args.use_liger_kernel
    assert not grpo_args(RLConfig(), tmp_path, "cpu").torch_compile
