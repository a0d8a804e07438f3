"""`gr2 variants` refuses what it cannot build on (trained end to end in test_end_to_end.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gr2.checks import ConfigError
from gr2.cli import main
from gr2.config import RunConfig, load_config
from gr2.pipeline import run_pipeline
from gr2.variants import VARIANTS, run_variants


def test_unfinished_base_and_unknown_variant_are_errors(generic_dir: Path, tmp_path: Path, capsys):
    cfg = load_config(None, ["data.k_core=2"], base={"data": {"dataset": str(generic_dir)}})
    base = run_pipeline(tmp_path / "base", cfg, stages=["data"])
    with pytest.raises(RuntimeError, match="not finished .*sid"):
        run_variants(base.path)
    assert not (base.path / "variants").exists(), "nothing is trained from scratch"
    with pytest.raises(ConfigError, match="unknown variant"):
        run_variants(base.path, ["chain-of-thought"])
    assert main(["variants", "--run-dir", str(tmp_path / "nowhere")]) == 2
    assert "config.yaml does not exist" in capsys.readouterr().err


def test_every_variant_changes_the_config_it_names():
    for name, variant in VARIANTS.items():
        assert variant.overrides and variant.description and variant.base_is_it, name
        load_config(None, list(variant.overrides))  # valid overrides


def stage_fingerprints(cfg) -> dict[str, str]:
    from gr2.pipeline import fingerprint
    from gr2.stages import get_stage
    from gr2.variants import TRAINING_STAGES

    return {s: fingerprint(cfg, get_stage(s, cfg)) for s in TRAINING_STAGES}


def retrained(base_overrides: list[str], variant: str) -> set[str]:
    """The training stages a variant of a base with ``base_overrides`` (on the quick profile) re-runs."""
    from gr2.config import profile_path

    base = stage_fingerprints(load_config(profile_path("quick"), base_overrides))
    changed = stage_fingerprints(load_config(profile_path("quick"), [*base_overrides, *VARIANTS[variant].overrides]))
    return {s for s in base if base[s] != changed[s]}


def test_pure_rl_retrains_rl_only_and_does_not_depend_on_traces_or_sft():
    from gr2.stages import get_stage

    assert retrained([], "pure-rl") == {"rl"}
    pure = load_config(None, list(VARIANTS["pure-rl"].overrides))
    assert get_stage("rl", pure).upstream == ("midtrain", "candidates")
    moved = load_config(None, [*VARIANTS["pure-rl"].overrides, "sft.lr=0.001", "traces.mode=targeted"])
    assert stage_fingerprints(moved)["rl"] == stage_fingerprints(pure)["rl"], "SFT and traces are not its inputs"
    assert stage_fingerprints(load_config(None, ["sft.lr=0.001"]))["rl"] != stage_fingerprints(RunConfig())["rl"], \
        "RL from the SFT model still depends on it"
    other = load_config(None, ["rl.init=smollm2-135m"])
    assert get_stage("rl", other).upstream == ("sid", "candidates")
    assert get_stage("rl", RunConfig()).upstream == ("sft",)


def test_recone_retrains_sft_and_rl_on_the_base_traces():
    assert retrained([], "recone") == {"sft", "rl"}  # quick: a listwise SFT base
    assert retrained(["sft.objective=traces"], "recone") == {"sft", "rl"}  # a trace-SFT base: 64 of its traces
    cfg = load_config(None, list(VARIANTS["recone"].overrides))
    assert (cfg.sft.objective, cfg.sft.max_examples, cfg.rl.init) == ("traces", 64, "sft")
