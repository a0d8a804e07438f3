"""The paper's variants of a finished run, for its results table (`gr2 variants`).

A variant is the base run's own config plus a few overrides. It is trained into
``BASE/variants/<name>/``, linking every stage it shares with the base (:mod:`gr2.reuse`), so only
the stages its overrides change run: ``targeted`` re-runs traces, SFT and RL; ``reasoning-free``
and ``pure-rl`` only RL (``pure-rl``'s RL reads the mid-trained model, not SFT's); ``recone`` SFT
(on 64 of the base's traces) and RL. Then the base run's eval is redone with the variants' models
added to ``eval.llm_models`` (``variants/targeted/sft``, ...), each row named by what it is
(:mod:`gr2.eval.labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gr2.checks import ConfigError
from gr2.config import RunConfig, load_config
from gr2.pipeline import fingerprint, run_pipeline
from gr2.runs import STAGE_MODELS, RunDir
from gr2.stages import STAGE_NAMES, get_stage

log = logging.getLogger(__name__)

VARIANTS_DIR = "variants"
"""Sub-folder of the base run holding one run directory per variant."""


@dataclass(frozen=True)
class Variant:
    overrides: tuple[str, ...]
    """``section.field=value`` applied to the base run's config."""
    description: str
    """What the variant trains (``gr2 variants --help``)."""
    base_is_it: str
    """Why it is skipped when the overrides change nothing: which of the base's rows it already is."""


VARIANTS: dict[str, Variant] = {
    "targeted": Variant(
        ("traces.mode=targeted",),
        "traces by targeted sampling (target revealed to the teacher), then SFT and RL on them",
        "the base run samples targeted traces: its own SFT and RL rows are the targeted ones"),
    "rejection": Variant(
        ("traces.mode=rejection",),
        "traces by rejection sampling (the GR2 recipe), then SFT and RL on them",
        "the base run samples rejection traces: its own SFT and RL rows are the rejection ones"),
    "reasoning-free": Variant(
        ("rl.reasoning=false",),
        "RL of the base's reasoning SFT model with ranking-only answers (docs/method.md §9)",
        "the base run's RL is reasoning-free already (rl.reasoning=false): its own RL row is the "
        "reasoning-free GR2"),
    "pure-rl": Variant(
        ("rl.init=midtrain",),
        "pure RL (RecZero-style, docs/method.md §10): DAPO straight from the mid-trained model, no traces "
        "and no SFT",
        "the base run's RL starts from the mid-trained model already (rl.init=midtrain): its own RL row is "
        "the pure-RL one"),
    "recone": Variant(
        ("sft.objective=traces", "sft.max_examples=64", "rl.init=sft"),
        "RecOne-style (docs/method.md §10): a cold-start SFT on a seeded sample of 64 accepted traces, "
        "then RL from that SFT model",
        "the base run is RecOne-style already (SFT on 64 traces, RL from it): its own SFT and RL rows are "
        "the RecOne ones"),
}
"""The variants ``gr2 variants`` trains, by name; adding one is one entry."""

TRAINING_STAGES = tuple(s for s in STAGE_NAMES if s != "eval")
"""What a variant runs: its rows are scored in the base run's table, not in a table of its own."""


def base_config(base: RunDir) -> RunConfig:
    """The config the base run recorded (``config.yaml``)."""
    path = base.path / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the base first (`gr2 run --out {base.path}`)")
    return load_config(path)


def variant_config(base: RunDir, base_cfg: RunConfig, variant: Variant) -> RunConfig | None:
    """The base run's config with the variant's overrides; ``None`` when they change nothing (the
    base run is this variant)."""
    cfg = load_config(base.path / "config.yaml", variant.overrides)
    if cfg.to_dict() == base_cfg.to_dict():
        return None
    # the base's variant rows are paths relative to the base run: meaningless inside a variant
    cfg.eval.llm_models = [m for m in cfg.eval.llm_models if not m.startswith(f"{VARIANTS_DIR}/")]
    return cfg


def variant_models(base: RunDir) -> list[str]:
    """``eval.llm_models`` entries for the models the variants under ``base`` trained themselves
    (a stage linked from the base is the base's own row already)."""
    found = []
    for name in VARIANTS:
        run = RunDir(base.path / VARIANTS_DIR / name)
        found += [f"{VARIANTS_DIR}/{name}/{stage}" for stage in STAGE_MODELS
                  if run.is_complete(stage) and run.reused_from(stage) is None]
    return found


def table_models(base_models: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base_models`` then ``extra`` without repeats, grouped by stage (every SFT row before the
    RL rows, as in the paper's table); other models keep their place at the end."""
    models = list(dict.fromkeys([*base_models, *extra]))
    rank = {stage: i for i, stage in enumerate(STAGE_MODELS)}
    return sorted(models, key=lambda m: rank.get(Path(m).name, len(rank)))


def run_variants(run_dir: str | Path, names: Sequence[str] | None = None, eval_too: bool = True
                 ) -> dict[str, RunDir | None]:
    """Train each variant in ``names`` (default: all of :data:`VARIANTS`) into
    ``run_dir/variants/<name>/``, reusing the base run's stages, then (``eval_too``) redo the base's
    eval with every trained variant's models as extra rows. Returns each variant's run directory,
    ``None`` for a variant skipped because the base run already is it."""
    base = RunDir(Path(run_dir))
    unknown = sorted(set(names or ()) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    cfg = base_config(base)
    unfinished = [s for s in TRAINING_STAGES if not base.is_complete(s, fingerprint(cfg, get_stage(s, cfg)))]
    if unfinished:  # a variant would silently train them all from scratch
        raise RuntimeError(f"{base.path} is not finished ({', '.join(unfinished)} missing or made with "
                           f"another config): finish it first (`gr2 run --out {base.path}`)")
    done: dict[str, RunDir | None] = {}
    for name in names or VARIANTS:
        variant = VARIANTS[name]
        vcfg = variant_config(base, cfg, variant)
        if vcfg is None:
            log.info("variant %s skipped: %s", name, variant.base_is_it)
            done[name] = None
            continue
        log.info("variant %s: %s (%s)", name, variant.description, ", ".join(variant.overrides))
        done[name] = run_pipeline(base.path / VARIANTS_DIR / name, vcfg, stages=TRAINING_STAGES, reuse=base.path)
    if eval_too:
        cfg.eval.llm_models = table_models(cfg.eval.llm_models, variant_models(base))
        run_pipeline(base.path, cfg, stages=["eval"])
    return done
