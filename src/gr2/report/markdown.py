"""Markdown building blocks of ``report.md``: what a section renderer needs about the run (its
path, manifest and plots), number formatting, tables, and the "not run" line."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gr2.report.artifacts import read_optional_json


@dataclass
class Context:
    """The run a report describes: ``manifest`` is ``manifest.json`` (empty when missing), ``plots``
    the PNGs :func:`gr2.report.plots.make_plots` wrote, by key."""

    run: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)

    def read(self, rel: str) -> Any | None:
        """An artifact (path relative to the run), ``None`` when missing."""
        return read_optional_json(self.run / rel)

    def stage(self, name: str) -> dict[str, Any]:
        """The manifest's record of a stage (status, started, finished, seconds), ``{}`` if none."""
        return self.manifest.get("stages", {}).get(name) or {}

    def gr2(self, args: str) -> str:
        """A ``gr2`` command on this run, as inline code."""
        return f"`gr2 {args.replace('RUN', shlex.quote(str(self.run)))}`"

    def image(self, key: str, alt: str) -> str:
        """The plot ``key`` linked relative to the run root (where report.md is), or ``""``."""
        path = self.plots.get(key)
        return f"![{alt}]({path.relative_to(self.run).as_posix()})\n" if path else ""

    @property
    def bootstrap(self) -> int | None:
        """``eval.bootstrap`` of the recorded config: resamples behind every CI and p-value."""
        return (self.manifest.get("config") or {}).get("eval", {}).get("bootstrap")


def fmt(x: Any, digits: int = 4) -> str:
    """A number as the report prints it: floats to ``digits`` decimals, ints with thousands
    separators, ``None``/NaN as an em dash; anything else as text."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def secs(x: float | None) -> str:
    return "—" if x is None else f"{x:,.1f}"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; cells go through :func:`fmt` unless already strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def kv_table(pairs: Mapping[str, Any]) -> str:
    """A two-column ``| field | value |`` table."""
    return table(["field", "value"], [[k, v] for k, v in pairs.items()])


def source(*files: str) -> str:
    return "Source: " + ", ".join(f"`{f}`" for f in files) + ".\n"


def not_run(ctx: Context, stage: str | None, missing: str, command: str) -> str:
    """Body of a section whose artifact is missing: the manifest's word on ``stage`` (``None``: a
    command outside the pipeline, which the manifest does not record) and the command that produces it."""
    info = ctx.stage(stage) if stage else {}
    status = info.get("status")
    why = f" (manifest: {status}" + (f": {info['error']}" if info.get("error") else "") + ")" if status else ""
    return f"**Not run**{why}: `{missing}` does not exist. Produce it with {ctx.gr2(command)}.\n"
