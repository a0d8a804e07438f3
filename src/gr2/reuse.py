"""Reusing a finished run's stages in a new run (a config sweep, the paper's variants: gr2.variants).

``run_pipeline(out, cfg, reuse=BASE)`` links every stage whose fingerprint under the new config
equals the one BASE recorded (and that is complete there) instead of recomputing it: the stage's
folder becomes a relative symlink to BASE's (a copy where symlinks fail) and its manifest entry is
copied with ``reused_from``. The base run must never be written through such a link, so:

* a linked stage that has to run again in the new run first loses the link (:func:`release`) and
  runs in an empty folder of its own, as in a fresh run;
* a command that adds files to a finished stage outside the pipeline (``gr2 eval rerank``,
  ``gr2 eval retrieval``, ``gr2 sid ablate``) first turns the link into a copy (:func:`detach`).
"""

from __future__ import annotations

import logging
import os
import shutil

from gr2.runs import RunDir, remove_path

log = logging.getLogger(__name__)


def run_id(run: RunDir) -> str:
    """How ``reused_from`` names a run: its resolved path (the same run however it was reached)."""
    return str(run.path.resolve())


def link_stage(run: RunDir, base: RunDir, stage: str) -> None:
    """Make ``run``'s ``stage`` the base run's: a symlink to its folder (a copy when the file system
    refuses symlinks) and its manifest entry, noting ``reused_from``."""
    info = base.stage_info(stage)
    if info is None:
        raise ValueError(f"{base.path} has no stage {stage!r} to reuse")
    target, link = base.path / stage, run.path / stage
    remove_path(link)  # a stale or interrupted attempt at this stage in the new run
    try:
        link.symlink_to(os.path.relpath(target.absolute(), link.parent.absolute()), target_is_directory=True)
    except OSError as exc:
        log.warning("stage %s: cannot symlink %s (%s), copying it", stage, target, exc)
        shutil.copytree(target, link, symlinks=True)
    run.record_stage(stage, {**info, "reused_from": run_id(base)})


def release(run: RunDir, stage: str) -> None:
    """Before ``stage`` runs in ``run``: a folder linked (or copied) from another run is replaced by
    nothing, so the stage starts empty and never writes into the other run."""
    path = run.path / stage
    if path.is_symlink() or run.reused_from(stage) is not None:
        remove_path(path)


def detach(run: RunDir, stage: str) -> None:
    """Before files are added to a finished ``stage`` outside the pipeline: a folder linked from
    another run becomes a copy of it, so the additions stay in ``run``. The copy is then this run's
    own folder (``reused_from`` becomes ``copied_from``): a later re-run of the stage keeps what was
    added, as it would in a run made from scratch."""
    path = run.path / stage
    if path.is_symlink():
        tmp = path.with_name(f".{stage}.detach-{os.getpid()}")
        remove_path(tmp)
        shutil.copytree(path.resolve(), tmp, symlinks=True)
        path.unlink()
        os.replace(tmp, path)
        log.info("stage %s: linked folder replaced by a copy before writing into it", stage)
    info = run.stage_info(stage) or {}
    if "reused_from" in info:
        info["copied_from"] = info.pop("reused_from")
        run.record_stage(stage, info)

