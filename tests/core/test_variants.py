"""`gr2 variants` refuses what it cannot build on (trained end to end in test_end_to_end.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gr2.checks import ConfigError
from gr2.cli import main
from gr2.config import load_config
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
