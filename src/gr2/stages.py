"""The pipeline's stages, declared: each stage's function, config section, the stages it reads (or
the config field that picks them), the files it promises and the processes that run it under
``accelerate launch`` (:data:`STAGES`, in order). :mod:`gr2.pipeline` runs them, and the run's report
(:mod:`gr2.report`) orders its sections by them; neither imports the other's module for it.

A stage's function is named as ``module:function`` and imported only when it runs, so ``gr2 --help``
does not import torch; the architecture test (``tests/core/test_architecture.py``) reads these names
as imports of :mod:`gr2.pipeline`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from gr2.config import RunConfig
    from gr2.runs import RunDir

Processes = Literal["main", "every", "one"]
"""Which processes of a launch of several run a stage (:attr:`Stage.processes`)."""


@dataclass(frozen=True)
class Stage:
    name: str
    """Sub-folder of the run directory and name on the command line."""
    function: str
    """``module:function`` run as ``function(run, config_section)``; imported lazily so that
    ``gr2 --help`` does not import torch."""
    section: str
    """Attribute of :class:`RunConfig` passed to the function."""
    upstream: tuple[str, ...]
    """Stages whose outputs this one reads."""
    outputs: tuple[str, ...]
    """Files (relative to the run directory) that must exist for the stage to count as done."""
    after: tuple[str, ...] = ()
    """Stages read only when present (e.g. the models the eval table scores): not required, but a
    stage that re-ran in the same call makes this one re-run too."""
    resumes: tuple[str, ...] = ()
    """Outputs the stage reads back when it resumes from a checkpoint (kept in place when it starts;
    see :func:`set_aside`)."""
    checkpoints: tuple[str, ...] = ()
    """What a re-run of the same config resumes from (training checkpoints, a finished warm-up):
    deleted when the stage starts with another config or is forced (:func:`gr2.pipeline.discard_checkpoints`)."""
    upstream_by: tuple[str, Mapping[str, tuple[str, ...]]] | None = dataclasses.field(default=None, hash=False)
    """``(field, {value: stages})``: the stages read picked by a config field (``section.name``)
    instead of ``upstream``; a value not listed reads the ``"*"`` entry's stages (``upstream`` without
    one). :func:`get_stage` applies it when given a config."""
    processes: Processes = "main"
    """Under a launch of several processes (``accelerate launch``, :mod:`gr2.training.dist`): ``main``
    runs on the main process while the others wait; ``every`` runs in every process, each training its
    share of the batch; ``one`` is refused (the stage trains in one process)."""

    def __post_init__(self) -> None:
        if self.processes not in get_args(Processes):
            raise ValueError(f"stage {self.name!r}: processes={self.processes!r}")

    def load(self) -> Callable[[RunDir, Any], dict[str, Any]]:
        module, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module), attr)


RL_WITHOUT_SFT: dict[str, tuple[str, ...]] = {"midtrain": ("midtrain", "candidates"), "*": ("sid", "candidates")}
"""What the ``rl`` stage reads when ``rl.init`` is not ``sft``: the mid-trained model, or (any other
model: a registry name, a folder) only the item SIDs and the candidate lists. Its fingerprint and its
re-runs then do not depend on the traces and SFT stages."""

STAGES: tuple[Stage, ...] = (
    Stage("data", "gr2.data.stage:run_data", "data", (),
          ("data/items.parquet", "data/interactions.parquet", "data/stats.json")),
    Stage("sid", "gr2.sid.stage:run_sid", "sid", ("data",),
          ("sid/sids.parquet", "sid/report.json")),
    Stage("candidates", "gr2.candidates.stage:run_candidates", "candidates", ("data",),
          ("candidates/train.parquet", "candidates/val.parquet", "candidates/test.parquet",
           "candidates/prerank.json")),
    Stage("midtrain", "gr2.midtrain.stage:run_midtrain", "midtrain", ("data", "sid"),
          ("midtrain/model/config.json", "midtrain/metrics.json"),
          checkpoints=("midtrain/checkpoints", "midtrain/warmup_model", "midtrain/loss_before.json"),
          processes="every"),
    Stage("traces", "gr2.traces.stage:run_traces", "traces", ("data", "sid", "candidates"),
          ("traces/samples.jsonl", "traces/accepted.jsonl", "traces/stats.json"), resumes=("traces/samples.jsonl",)),
    Stage("sft", "gr2.sft.stage:run_sft", "sft", ("midtrain", "traces"),
          ("sft/model/config.json", "sft/metrics.json"), checkpoints=("sft/checkpoints",), processes="every"),
    Stage("rl", "gr2.rl.stage:run_rl", "rl", ("sft",),
          ("rl/model/config.json", "rl/metrics.json", "rl/log.jsonl"), resumes=("rl/log.jsonl",),
          checkpoints=("rl/checkpoints",), processes="every",
          upstream_by=("rl.init", {"sft": ("sft",), **RL_WITHOUT_SFT})),  # RL without SFT (RecZero-style)
    Stage("eval", "gr2.eval.stage:run_eval", "eval", ("data", "candidates"),
          ("eval/results.json", "eval/results.md"), after=("midtrain", "sft", "rl")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
"""The re-ranking pipeline's stages, in order (``task: rerank``)."""

RATING = Stage("rating", "gr2.rating.stage:run_rating", "rating", ("data",),
               ("rating/results.json", "rating/results.md", "rating/model/config.json"),
               checkpoints=("rating/checkpoints",), processes="one")
"""The rating-prediction task's own stage (docs/rating.md)."""

TASKS: dict[str, tuple[str, ...]] = {"rerank": STAGE_NAMES, "rating": ("data", RATING.name)}
"""The stages each task (``RunConfig.task``) runs, in order."""

SLATE_STAGES: dict[str, Stage] = {
    "data": Stage("data", "gr2.slates.stage:run_slates_data", "slates", (),
                  ("data/items.parquet", "data/interactions.parquet", "data/stats.json", "data/slates.parquet")),
    "candidates": Stage("candidates", "gr2.slates.stage:run_slates_candidates", "slates", ("data",),
                        ("candidates/train.parquet", "candidates/val.parquet", "candidates/test.parquet",
                         "candidates/slates.json")),
}
"""With ``slates.path`` set, these replace the data and candidates stages (docs/slates.md)."""


def task_stages(cfg: RunConfig) -> tuple[str, ...]:
    """The stages ``cfg``'s task runs, in order."""
    return TASKS[cfg.task]


def get_stage(name: str, cfg: RunConfig | None = None) -> Stage:
    """The stage called ``name``; the slates version of it when ``cfg`` reads slates, and reading what
    ``cfg`` picks when its upstream depends on the config (:attr:`Stage.upstream_by`)."""
    if cfg is not None and cfg.slates.path and name in SLATE_STAGES:
        return SLATE_STAGES[name]
    for stage in (*STAGES, RATING):
        if stage.name == name:
            if cfg is None or stage.upstream_by is None:
                return stage
            field, reads = stage.upstream_by
            section, _, attr = field.partition(".")
            upstream = reads.get(getattr(getattr(cfg, section), attr), reads.get("*", stage.upstream))
            return stage if upstream == stage.upstream else dataclasses.replace(stage, upstream=upstream)
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join((*STAGE_NAMES, RATING.name))}")
