"""``report.md`` at the run root: every stage's numbers, in pipeline order, with the plots, the stage
timings, the exact config and the command that reproduces the run.

A section whose artifact is missing says "not run" (with the manifest's word on the stage and the
command that produces it); one whose artifact has an unexpected shape says so and names the file.
Neither stops the report: it describes whatever part of the pipeline was run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gr2.report import sections
from gr2.report.markdown import Context, not_run
from gr2.report.plots import make_plots
from gr2.runs import MANIFEST, atomic_write_text, read_json
from gr2.stages import TASKS

log = logging.getLogger(__name__)

REPORT = "report.md"


@dataclass(frozen=True)
class Section:
    title: str
    render: Callable[[Context], str]
    artifact: str | None = None
    """File (relative to the run) the section needs; missing → "not run"."""
    stage: str | None = None
    """Stage that writes ``artifact`` (for the manifest status and the command to run it)."""
    command: str | None = None
    """``gr2`` arguments that produce ``artifact`` (``RUN`` = the run directory)."""


SECTIONS: tuple[Section, ...] = (
    Section("Reproduce", sections.reproduce),
    Section("Dataset", sections.dataset, "data/stats.json", "data", "data --run-dir RUN"),
    Section("Semantic IDs", sections.sids, "sid/report.json", "sid", "sid --run-dir RUN"),
    Section("Pre-ranker and candidate lists", sections.candidates, "candidates/prerank.json", "candidates",
            "candidates --run-dir RUN"),
    Section("Mid-training", sections.midtrain, "midtrain/metrics.json", "midtrain", "midtrain --run-dir RUN"),
    Section("Teacher traces", sections.traces, "traces/stats.json", "traces", "traces --run-dir RUN"),
    Section("SFT", sections.sft, "sft/metrics.json", "sft", "sft --run-dir RUN"),
    Section("RL", sections.rl, "rl/metrics.json", "rl", "rl --run-dir RUN"),
    Section("Results", sections.results, "eval/results.json", "eval", "eval --run-dir RUN"),
    Section("Rating prediction", sections.rating, "rating/results.json", "rating", "rating --run-dir RUN"),
    Section("Stage timings", sections.timings, MANIFEST),
    Section("Configuration", sections.configuration),
)


def build_report(run_path: str | Path) -> Path:
    """Write ``<run>/report.md`` (atomically) and its plots under ``<run>/report/``; return the path.
    The sections are those of the run's task (``config.task``: the stages it runs, and the rest).

    Reads only the run directory (docs/artifacts.md), so it can be called after any stage, or on a
    run copied from another machine."""
    run_path = Path(run_path)
    if not run_path.is_dir():
        raise FileNotFoundError(f"{run_path} is not a run directory")
    manifest = read_json(run_path / MANIFEST) if (run_path / MANIFEST).is_file() else {}
    ctx = Context(run_path, manifest, make_plots(run_path))
    parts = [f"# Run report: {run_path.name}\n",
             "Sections in pipeline order; each names the file its numbers come from.\n"]
    stages = TASKS.get((manifest.get("config") or {}).get("task"), TASKS["rerank"])
    parts += [f"## {s.title}\n\n{render_section(ctx, s)}" for s in SECTIONS if s.stage in (None, *stages)]
    path = run_path / REPORT
    atomic_write_text(path, "\n".join(parts))
    log.info("report: %s (%d plots)", path, len(ctx.plots))
    return path


def render_section(ctx: Context, section: Section) -> str:
    """The section's body; "not run" when its artifact is missing."""
    if section.artifact and not (ctx.run / section.artifact).is_file():
        if section.stage is None:
            return f"**Not available**: `{section.artifact}` does not exist.\n"
        return not_run(ctx, section.stage, section.artifact, section.command or "")
    try:
        return section.render(ctx)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # An artifact from an older gr2 with other fields: say so rather than lose the whole report.
        log.warning("report: section %r failed (%s: %s)", section.title, type(exc).__name__, exc)
        where = f"`{section.artifact}`" if section.artifact else "the run directory"
        return f"**Could not be summarised** ({type(exc).__name__}: {exc}): see {where} directly.\n"
