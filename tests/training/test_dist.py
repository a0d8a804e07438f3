"""gr2.training.dist without a launcher (one process: every helper is a no-op) and its rules for several
processes that need no process group (the batch split, the device, the engines refused). The
launched processes themselves: tests/core/test_multiprocess.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gr2.checks import ConfigError
from gr2.rl.config import RLConfig
from gr2.sft.config import SFTConfig
from gr2.training import dist
from gr2.training.loop import device_batch

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
LAUNCHER_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "LOCAL_RANK",
                 "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE",
                 "ACCELERATE_DEEPSPEED_CONFIG_FILE")


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def launched(monkeypatch, n: int, local_rank: int = 0) -> None:
    """The environment ``accelerate launch`` / torchrun gives a process (no process group is made here)."""
    monkeypatch.setenv("WORLD_SIZE", str(n))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_one_process_is_the_main_one_and_never_waits():
    assert dist.launched_processes() == 1 and not dist.is_distributed()
    assert dist.is_main()
    dist.barrier()
    assert dist.local_device("cuda") == "cuda" and dist.local_device("cpu") == "cpu"
    assert dist.per_device_batch(7) == 7
    assert dist.sharded_weights() is None
    dist.refuse_sharded("anything")


def test_the_global_batch_is_split_evenly_or_refused():
    assert dist.per_device_batch(8, processes=2) == 4
    assert dist.per_device_batch(8, processes=8) == 1
    with pytest.raises(ConfigError, match=r"batch_size=3 is the global batch.*multiple of 2"):
        dist.per_device_batch(3, processes=2)
    with pytest.raises(ConfigError, match="multiple of 16"):
        dist.per_device_batch(8, processes=16)


def test_a_stage_batch_is_split_over_the_launched_processes(monkeypatch):
    launched(monkeypatch, 2)
    assert device_batch(SFTConfig(batch_size=4)) == 2
    with pytest.raises(ConfigError, match=r"^sft\.batch_size=3 "):
        device_batch(SFTConfig(batch_size=3))
    rl = RLConfig(batch_size=3, num_generations=2)  # 6 completions a micro-step, 3 per process
    assert device_batch(rl, rl.batch_size * rl.num_generations // rl.grad_accum) == 3
    launched(monkeypatch, 4)
    with pytest.raises(ConfigError, match=r"^rl\.batch_size \* num_generations / grad_accum=6 "):
        device_batch(rl, 6, "batch_size * num_generations / grad_accum")


def test_each_process_uses_its_own_gpu(monkeypatch):
    launched(monkeypatch, 2, local_rank=1)
    assert dist.local_device("cuda") == "cuda:1"
    assert dist.local_device("cuda:0") == "cuda:0"  # asked for by name: kept
    assert dist.local_device("cpu") == "cpu"


@pytest.mark.parametrize(("env", "engine"), [
    ({"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "DeepSpeed ZeRO-3"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, None),
    ({}, None),
])
def test_engines_that_shard_the_weights_are_named_and_refused_where_the_whole_model_is_needed(
        monkeypatch, env, engine):
    launched(monkeypatch, 2)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert dist.sharded_weights() == engine
    if engine is None:
        dist.refuse_sharded("mid-training")
    else:
        with pytest.raises(ConfigError, match=f"mid-training needs the whole model.*{engine}"):
            dist.refuse_sharded("mid-training")


def test_a_deepspeed_json_file_at_stage_3_shards_the_weights(monkeypatch, tmp_path):
    launched(monkeypatch, 2)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", raising=False)
    for stage, engine in ((3, "DeepSpeed ZeRO-3"), (2, None)):
        (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": stage}}))
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(tmp_path / "ds.json"))
        assert dist.sharded_weights() == engine


@pytest.mark.parametrize(("name", "engine"), [("ddp", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"),
                                              ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_the_accelerate_configs_load_and_say_what_they_are_for(name, engine):
    """configs/accelerate/ (README, "GPUs and large teachers"); ddp.yaml is launched by
    tests/core/test_multiprocess.py, the others need GPUs (and DeepSpeed)."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == engine and cfg.mixed_precision == "no"  # gr2 picks bf16 itself
    assert path.read_text().startswith("# "), "a comment on what the config is for"
    assert {"deepspeed_zero2": 2, "deepspeed_zero3": 3}.get(name) == (cfg.deepspeed_config or {}).get("zero_stage")
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # dist.save_model gathers it
