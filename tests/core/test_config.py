from __future__ import annotations

import pytest

from gr2.checks import ConfigError
from gr2.config import RunConfig, load_config, profile_path, save_config


def test_profiles_load_and_round_trip(tmp_path):
    for name in ("quick", "medium", "gpu", "full", "tiny"):
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


@pytest.mark.parametrize(
    "override, message",
    [
        ("rl.steps=-5", "rl: steps must be >= 1, got -5"),
        ("rl.lr=0", "rl: lr must be > 0, got 0.0"),
        ("midtrain.steps=0", "midtrain: steps must be >= 1, got 0"),
        ("midtrain.lr_warmup_ratio=1.5", "midtrain: lr_warmup_ratio must be in \\[0, 1\\], got 1.5"),
        ("sft.steps=-5", "sft: steps must be >= 1 or None, got -5"),
        ("sft.batch_size=0", "sft: batch_size must be >= 1, got 0"),
        ("sft.save_steps=0", "sft: save_steps must be >= 1, got 0"),
        ("candidates.k=0", "candidates: k must be >= 1, got 0"),
        ("candidates.k=-3", "candidates: k must be >= 1, got -3"),
        ("sid.levels=0", "sid: levels must be >= 1, got 0"),
        ("sid.codebook_size=1", "sid: codebook_size must be >= 2, got 1"),
        ("eval.recall_ks=[0]", "eval: recall_ks must be >= 1 each"),
        ("eval.ndcg_ks=[]", "eval: ndcg_ks must be >= 1 each \\(and not empty\\)"),
        ("data.max_users=0", "data: max_users must be >= 1 or None, got 0"),
        ("data.k_core=-1", "data: k_core must be >= 0, got -1"),
        ("sid.lr=.nan", "sid: lr must be > 0, got nan"),
    ],
)
def test_out_of_range_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_every_profile_passes_the_range_checks():
    for name in ("tiny", "quick", "medium", "gpu", "full"):
        load_config(profile_path(name))


def test_the_command_line_answers_a_bad_value_with_one_line_and_exit_code_2(tmp_path, capsys):
    from gr2.cli import main

    assert main(["data", "--run-dir", str(tmp_path / "run"), "--set", "rl.steps=-5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gr2: error: rl: steps must be >= 1, got -5"
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_key_given_twice_in_a_config_file_is_an_error_with_its_lines(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("sft:\n  lr: 1.0e-4\n  steps: 10\n  lr: 2.0e-4\n")
    with pytest.raises(ConfigError, match="my.yaml, line 4, column 3: .*key 'lr' appears twice \\(first at line 2\\)"):
        load_config(path)
    path.write_text("sft:\n  lr: 1.0e-4\nsft:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="line 3.*'sft' appears twice"):
        load_config(path)
    path.write_text("sft:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match="my.yaml, line 3, column 1: not valid YAML") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError, match="quick"):
        profile_path("nope")


def test_fingerprint_changes_with_the_section_only():
    a, b = RunConfig(), RunConfig()
    b.eval.seed = 9
    assert a.fingerprint("data") == b.fingerprint("data")
    assert a.fingerprint("eval") != b.fingerprint("eval")


#: The default config's stage fingerprints. A new field changes them, and so makes every finished run's
#: stages look stale: list the field in gr2.fingerprints.NEUTRAL_FIELDS when its default keeps what runs did,
#: else update these (and say in the commit that finished runs re-run those stages).
DEFAULT_FINGERPRINTS = {"data": "491cfc28373756ed", "sid": "4f89a36054922027", "candidates": "9d99723f8ed1bb8d",
                        "midtrain": "8e1ab0066da31899", "traces": "f3def244bfe1ca14", "sft": "b166ed4fc9d2dc1e",
                        "rl": "4547be23bf167107", "eval": "cb460e56462d6a13"}


def test_new_fields_do_not_make_finished_runs_stale():
    from gr2.pipeline import fingerprint
    from gr2.stages import STAGES

    cfg = RunConfig()
    assert {s.name: fingerprint(cfg, s) for s in STAGES} == DEFAULT_FINGERPRINTS
    sft = next(s for s in STAGES if s.name == "sft")
    moved = load_config(None, ["sft.group_by_length=true"])
    assert fingerprint(moved, sft) != DEFAULT_FINGERPRINTS["sft"], "a neutral field away from its value counts"


def test_the_new_neutral_fields_count_away_from_their_value_even_when_nested():
    from gr2.fingerprints import NEUTRAL_FIELDS
    from gr2.pipeline import fingerprint
    from gr2.stages import get_stage

    assert NEUTRAL_FIELDS["max_examples"] is None and NEUTRAL_FIELDS["reasoning_format"] == "free"
    for override, stages in (("sft.max_examples=64", {"sft", "rl"}),
                             ("rl.prompt.reasoning_format=think", {"rl"}),
                             ("traces.prompt.reasoning_format=think", {"traces", "sft", "rl"})):
        cfg = load_config(None, [override])
        moved = {s: fingerprint(cfg, get_stage(s, cfg)) for s in DEFAULT_FINGERPRINTS}
        assert {s for s in moved if moved[s] != DEFAULT_FINGERPRINTS[s]} == stages, override
    # set explicitly to the neutral value: the same fingerprints as a config that predates the fields
    cfg = load_config(None, ["sft.max_examples=null", "rl.prompt.reasoning_format=free"])
    assert {s: fingerprint(cfg, get_stage(s, cfg)) for s in DEFAULT_FINGERPRINTS} == DEFAULT_FINGERPRINTS
