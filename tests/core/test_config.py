from __future__ import annotations

import pytest

from gr2.config import ConfigError, RunConfig, load_config, profile_path, save_config


def test_profiles_load_and_round_trip(tmp_path):
    for name in ("quick", "medium", "full", "tiny"):
        cfg = load_config(profile_path(name))
        assert isinstance(cfg, RunConfig)
        save_config(cfg, tmp_path / f"{name}.yaml")
        assert load_config(tmp_path / f"{name}.yaml") == cfg


def test_overrides_are_typed_and_nested():
    cfg = load_config(profile_path("quick"), ["candidates.k=20", "candidates.params.sasrec.hidden=32", "data.max_users=null"])
    assert cfg.candidates.k == 20
    assert cfg.candidates.params["sasrec"]["hidden"] == 32
    assert cfg.data.max_users is None


def test_exponent_floats_without_a_dot_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 as the string "1e-3"; a float field takes it as the number
    cfg = load_config(profile_path("quick"), ["sft.lr=1e-3", "rl.lr=5E-6"])
    assert cfg.sft.lr == 0.001 and cfg.rl.lr == 5e-6
    with pytest.raises(ConfigError, match="expected float"):
        load_config(None, ["sft.lr=fast"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("candidates.kk=3", "unknown field"),
        ("candidates.k=ten", "expected int"),
        ("data=3", "expected a mapping"),
        ("nofield", "section.field=value"),
        ("candidates.exclude_seen=1", "expected bool"),
    ],
)
def test_bad_overrides_name_the_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError, match="quick"):
        profile_path("nope")


def test_fingerprint_changes_with_the_section_only():
    a, b = RunConfig(), RunConfig()
    b.eval.seed = 9
    assert a.fingerprint("data") == b.fingerprint("data")
    assert a.fingerprint("eval") != b.fingerprint("eval")
