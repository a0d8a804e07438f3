"""The pipeline: stages in order, each skipped when its outputs are complete for the same config.

A stage is a function ``fn(run: RunDir, cfg) -> dict`` (the dict is a short summary stored in the
manifest) that reads earlier stages' files from the run directory and writes its own. The
stages are declared in :mod:`gr2.stages` (config section, the stages each reads from, the files it
promises); a stage whose config or any upstream stage changed is re-run, and so is everything
downstream of it. ``run_pipeline(..., reuse=BASE)`` links the stages a finished run already made
with the same fingerprints instead of recomputing them (:mod:`gr2.reuse`).

Launched as several processes (``accelerate launch``, :mod:`gr2.training.dist`), each stage runs as
its :attr:`~gr2.stages.Stage.processes` says: the training stages in every process, the others on the
main one while the rest wait, and a stage that trains in one process is refused. The main process alone
writes the manifest, ``config.yaml``, links and the report, between barriers, so every process takes
the same decisions from the same files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gr2.checks import ConfigError
from gr2.config import RunConfig, save_config
from gr2.reuse import link_stage, release, run_id
from gr2.runs import RunDir, remove_path
from gr2.stages import Stage, get_stage, task_stages
from gr2.training import dist

log = logging.getLogger(__name__)


def fingerprint(cfg: RunConfig, stage: Stage) -> str:
    """Hash of the stage's own config and, recursively, of everything upstream of it."""
    sections: list[str] = []

    def collect(s: Stage) -> None:
        for up in s.upstream:
            collect(get_stage(up, cfg))
        if s.section not in sections:
            sections.append(s.section)

    collect(stage)
    return cfg.fingerprint(*sections)


STALE = ".stale"
"""Suffix of an output set aside while its stage runs again (:func:`set_aside`)."""


def _aside(run: RunDir, stage: Stage) -> list[Path]:
    return [run.path / f"{rel}{STALE}" for rel in (*stage.outputs, "report.md") if rel not in stage.resumes]


def set_aside(run: RunDir, stage: Stage) -> None:
    """Before ``stage`` runs: its outputs from an earlier run (``eval/results.md``, ``sft/metrics.json``,
    …, not those it resumes from) and the run's ``report.md`` are renamed to ``<name>.stale``, so a
    stage killed half-way never leaves results that look current. They are deleted when the stage
    finishes (its new outputs replace them)."""
    for aside in _aside(run, stage):
        current = aside.with_name(aside.name[:-len(STALE)])
        if current.is_file():
            os.replace(current, aside)


def discard_checkpoints(run: RunDir, stage: Stage, fp: str, force: bool) -> list[Path]:
    """Delete what ``stage`` would resume from (:attr:`Stage.checkpoints`) when its last attempt in
    ``run`` was made with another config (a recorded fingerprint other than ``fp``) or when it is
    forced (``force``): a trainer resumes from whatever checkpoint it finds, and another config's would
    continue the wrong model (or fail on a different optimiser). Returns what was deleted."""
    previous = run.manifest().get("stages", {}).get(stage.name, {}).get("fingerprint")
    if not force and previous in (None, fp):
        return []
    gone = [run.path / rel for rel in stage.checkpoints if (run.path / rel).exists()]
    for path in gone:
        log.info("stage %s: %s deleted (%s)", stage.name, path, "forced re-run" if force else "another config")
        remove_path(path)
    return gone


def run_stage(run: RunDir, cfg: RunConfig, name: str, force: bool = False) -> dict[str, Any] | None:
    """Run one stage unless it is already complete for this config; returns its summary."""
    stage = get_stage(name, cfg)
    for up in stage.upstream:
        if not run.is_complete(up, fingerprint(cfg, get_stage(up, cfg))):
            raise RuntimeError(
                f"stage {name!r} needs stage {up!r}, which is missing or was made with another "
                f"config in {run.path}: run `gr2 {up} --run-dir {run.path}` first (or `gr2 run`)"
            )
    fp = fingerprint(cfg, stage)
    if not force and run.is_complete(name, fp):
        log.info("stage %s: complete, skipped", name)
        return None
    if dist.is_distributed() and stage.processes == "one":
        raise ConfigError(f"the {name} stage trains in one process: run it without `accelerate launch`")
    log.info("stage %s: running", name)
    dist.barrier()  # every process has read the manifest before the main one changes it
    if dist.is_main():
        release(run, name)  # a folder linked from another run: this run's outputs go to a folder of its own
        discard_checkpoints(run, stage, fp, force)
        set_aside(run, stage)
        run.mark_running(name, fp)
    dist.barrier()
    start = time.perf_counter()
    try:
        if dist.is_main() or stage.processes == "every":
            summary = stage.load()(run, getattr(cfg, stage.section)) or {}
        else:
            summary = {}  # the main process runs it; this one waits at the barrier below
    except BaseException as exc:
        if dist.is_main():
            run.mark_failed(name, f"{type(exc).__name__}: {exc}")
        raise
    dist.barrier()
    seconds = time.perf_counter() - start
    if dist.is_main():
        run.mark_done(name, list(stage.outputs), seconds, summary)
        for path in _aside(run, stage):
            path.unlink(missing_ok=True)
        log.info("stage %s: done in %.1f s", name, seconds)
        if name == task_stages(cfg)[-1]:  # the results are in: the run's report.md gathers every stage's numbers
            from gr2.report import build_report

            build_report(run.path)
    dist.barrier()  # the manifest says done before any process looks at the next stage
    return summary


def reusable(run: RunDir, base: RunDir, cfg: RunConfig, stage: Stage) -> bool:
    """True when ``base`` holds ``stage`` complete with the fingerprint ``cfg`` gives it, and
    the stages it reads only when present (``after``, not in the fingerprint) are the same in both
    runs: linked from ``base``, or absent from both."""
    if not base.is_complete(stage.name, fingerprint(cfg, stage)):
        return False
    return all(run.reused_from(a) == run_id(base) if base.is_complete(a) else not run.is_complete(a)
               for a in stage.after)


def run_pipeline(
    out: str | Path,
    cfg: RunConfig,
    stages: Sequence[str] | None = None,
    force: Sequence[str] = (),
    reuse: str | Path | None = None,
) -> RunDir:
    """Run the stages in order (all by default) in ``out``; resumes where a previous run stopped.

    ``force`` names stages to redo even when complete. A stage that reads from a stage that ran
    in this call is redone too, since its inputs were rewritten. ``reuse``: a finished run whose
    stages with the same fingerprint are linked into ``out`` instead of run (:mod:`gr2.reuse`).
    """
    order = task_stages(cfg)
    wanted = list(stages or order)
    if set(wanted) - set(order):
        raise ConfigError(f"stage(s) {sorted(set(wanted) - set(order))} are not part of task {cfg.task!r} "
                          f"({' → '.join(order)}); set the task with --task")
    run = RunDir(Path(out))
    base = None if reuse is None else RunDir(Path(reuse))
    if base is not None and not base.manifest_path.is_file():
        raise FileNotFoundError(f"--reuse {base.path}: no {base.manifest_path.name} there (not a run directory)")
    if base is not None and run_id(base) == str(run.path.resolve()):
        raise ConfigError(f"--reuse {base.path}: a run cannot reuse itself")
    dist.barrier()  # every process has read the run's config.yaml (the command line does) before it is rewritten
    if dist.is_main():
        run.path.mkdir(parents=True, exist_ok=True)
        run.record_config(cfg.to_dict())
        save_config(cfg, run.path / "config.yaml")
    dist.barrier()
    redo = set(force)
    for name in order:
        if name not in wanted:
            continue
        stage = get_stage(name, cfg)
        if redo & set(stage.upstream + stage.after):
            redo.add(name)
        if (base is not None and name not in redo and not run.is_complete(name, fingerprint(cfg, stage))
                and reusable(run, base, cfg, stage)):
            if dist.is_main():
                link_stage(run, base, name)
                log.info("stage %s: reused from %s", name, base.path)
            dist.barrier()
        if run_stage(run, cfg, name, force=name in redo) is not None:
            redo.add(name)  # everything downstream of a stage that ran is rebuilt on its outputs
    return run
