"""PNG plots of a run, written under ``<run>/report/`` and embedded in ``report.md``.

Each plot function takes a parsed artifact, writes one PNG and returns its path, or returns ``None``
(logged) when the artifact holds nothing to plot; :func:`make_plots` reads the artifacts and skips a
plot whose stage was not run. Figures use matplotlib's object API (``Figure``, no pyplot): no display
and no global state, so a report can be built on a headless machine or inside another program.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gr2.eval.report import REFERENCE
from gr2.report.artifacts import read_optional_json
from gr2.runs import atomic_write_bytes, read_jsonl

log = logging.getLogger(__name__)

PLOTS_DIR = "report"
"""Folder of the run directory the PNGs go to (``report.md`` links them relative to the run root)."""
PLOT_FILES = {"midtrain": "midtrain_loss.png", "sft": "sft_loss.png", "sft_curve": "sft_curve.png",
              "rl": "rl_curves.png", "metrics": "metric_bars.png"}
BAR_METRICS = ("N@5", "R@1")
RATE = (-0.05, 1.05)
RL_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], tuple[float, float] | None], ...] = (
    ("reward (mean per step)", (("reward", "reward"), ("rl/task_reward", "task reward")), None),
    ("identity-copy rate", (("rl/copy_prerank_rate", "pre-rank order"), ("rl/copy_shown_rate", "shown order")), RATE),
    ("valid-output rate", (("rl/valid_rate", "valid permutation"), ("rl/format_rate", "answer format")), RATE),
)
"""``(title, ((rl/log.jsonl key, label), ...), y-limits)`` per panel (docs/artifacts.md, rl/); a key
never logged is left out, a panel with none is not drawn."""


# -- metric bars ----------------------------------------------------------------------------------
def metric_bars(results: Mapping[str, Any], path: Path, metrics: Sequence[str] = BAR_METRICS) -> Path | None:
    """Horizontal bars of ``metrics`` per system of ``eval/results.json`` with their 95% bootstrap CI.

    LLM rows scored on a subset of the lists (``results["subsets"]``) are drawn with the pre-rank
    order on the same lists next to them, since they are not comparable with the full-table rows."""
    rows = _bar_rows(results)
    metrics = [m for m in metrics if any(m in row.get("metrics", {}) for _, row in rows)]
    if not rows or not metrics:
        log.info("report: eval/results.json has no system with %s, metric bars skipped", "/".join(BAR_METRICS))
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(metrics) + 2.5, 0.4 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = list(range(len(rows)))
    colors = ["tab:gray" if label.startswith(REFERENCE) else "tab:blue" for label, _ in rows]
    for ax, key in zip(axes, metrics):
        means = [row.get("metrics", {}).get(key, math.nan) for _, row in rows]
        cis = [row.get("ci95", {}).get(key) or [m, m] for (_, row), m in zip(rows, means)]
        err = [[max(0.0, m - lo) for m, (lo, _) in zip(means, cis)],
               [max(0.0, hi - m) for m, (_, hi) in zip(means, cis)]]
        ax.barh(y, means, xerr=err, color=colors, capsize=3)
        ax.set_xlim(0, 1.05)
        ax.set_xlabel(key)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [label for label, _ in rows])
    axes[0].invert_yaxis()  # first system of the table on top
    fig.suptitle(f"Re-ranking on {results.get('n_lists', '?')} {results.get('split', '')} lists "
                 "(error bars: 95% bootstrap CI)")
    return _save(fig, path)


def _bar_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, row)`` for every main-table system, then the subsets' systems, each group after the
    pre-rank order on its lists. Subsets with the same reference numbers (the LLM rows share one seeded
    sample of lists) share one reference bar: identical bars would only repeat it."""
    rows = list(results.get("systems", {}).items())
    groups: dict[tuple, list[tuple[str, Mapping[str, Any]]]] = {}
    for name, sub in results.get("subsets", {}).items():
        systems = sub.get("systems", {})
        ref = systems.get(REFERENCE, {})
        key = (sub.get("n_lists"), json.dumps([ref.get("metrics"), ref.get("ci95")], sort_keys=True))
        group = groups.setdefault(key, [(f"{REFERENCE} ({sub.get('n_lists', '?')} lists)", ref)] if ref else [])
        if name in systems:
            group.append((f"{name} ({sub.get('n_lists', '?')} lists)", systems[name]))
    return rows + [row for group in groups.values() for row in group]


# -- training curves ------------------------------------------------------------------------------
def midtrain_curves(metrics: Mapping[str, Any], path: Path) -> Path | None:
    """From ``midtrain/metrics.json``: held-out loss per task before and after mid-training (bars) and
    the training loss per logged step of each phase (``phases[name]["log"]``)."""
    before, after = metrics.get("loss_before") or {}, metrics.get("loss_after") or {}
    tasks = [t for t in before if t in after]
    phases = {name: _series(p.get("log") or [], "loss") for name, p in (metrics.get("phases") or {}).items()}
    phases = {name: s for name, s in phases.items() if s[0]}
    if not tasks and not phases:
        log.info("report: midtrain/metrics.json has no task loss and no logged step, plot skipped")
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.5 * (bool(tasks) + bool(phases)), 3.8), layout="constrained")
    axes = list(fig.subplots(1, bool(tasks) + bool(phases), squeeze=False)[0])
    if tasks:
        ax = axes.pop(0)
        x = list(range(len(tasks)))
        ax.bar([i - 0.2 for i in x], [before[t]["loss"] for t in tasks], width=0.4, label="before")
        ax.bar([i + 0.2 for i in x], [after[t]["loss"] for t in tasks], width=0.4, label="after")
        ax.set_xticks(x, tasks)
        ax.set_ylabel("held-out loss (mean NLL per token)")
        ax.set_title("held-out loss per task")
        ax.margins(y=0.15)  # room for the legend above the bars
        ax.legend(loc="upper right", ncols=2)
    if phases:
        ax = axes.pop(0)
        for name, (xs, ys) in phases.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss")
        ax.set_title("training loss per phase")
        ax.legend()
    fig.suptitle("Mid-training")
    return _save(fig, path)


def sft_curves(metrics: Mapping[str, Any], path: Path) -> Path | None:
    """From ``sft/metrics.json``'s ``log``: the weighted loss and the per-token NLL of the reasoning
    and ranking parts (trace objective), or the listwise loss parts and training R@1 (listwise
    objective), per logged step."""
    lines = metrics.get("log") or []
    panels = (("loss", (("loss", "loss"),), None),
              ("mean NLL per token", (("nll_reasoning", "reasoning"), ("nll_ranking", "ranking")), None),
              ("listwise loss parts", (("ce", "cross-entropy"), ("distill", "distillation")), None),
              ("training R@1 (batch)", (("top1", "top-1 = target"),), RATE))
    return _line_figure(lines, panels, "SFT", path, "sft/metrics.json")


def learning_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path | None:
    """Validation N@5 against training lists seen, one line per ``label -> sft/curve.jsonl points``
    (the run's SFT and its variants'), with the pre-rank order's N@5 on the same lists dashed."""
    curves = {label: points for label, points in curves.items() if points}
    if not curves:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for label, points in curves.items():
        ax.plot([p["lists_seen"] for p in points], [p["N@5"] for p in points], marker="o", markersize=3, label=label)
    prerank = next((p["prerank_N@5"] for points in curves.values() for p in points if "prerank_N@5" in p), None)
    if prerank is not None:
        ax.axhline(prerank, linestyle="--", color="grey", label="pre-rank order")
    ax.set_xlabel("training lists (or traces) seen")
    ax.set_ylabel("validation N@5 (direct)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle("SFT learning curve (sft/curve.jsonl)")
    return _save(fig, path)


def curve_sources(run_path: Path) -> dict[str, list[dict[str, Any]]]:
    """``label -> points`` of the run's ``sft/curve.jsonl`` and of each ``variants/NAME/sft/curve.jsonl``;
    a label names the objective (and the variant)."""
    run_path = Path(run_path)
    found = {"": run_path / "sft"}
    found.update({f" ({v.name})": v / "sft" for v in sorted((run_path / "variants").glob("*")) if v.is_dir()})
    out = {}
    for suffix, folder in found.items():
        points = read_jsonl(folder / "curve.jsonl")
        if points:
            objective = (read_optional_json(folder / "metrics.json") or {}).get("objective", "traces")
            out[f"{objective}{suffix}"] = points
    return out


def rl_curves(lines: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """From ``rl/log.jsonl``: reward, identity-copy rates, valid-output rates and, when the log has
    one, the validation N@5 per step (any key naming val/eval and N@5 or NDCG@5)."""
    val_keys = sorted({k for line in lines for k in line if _is_validation_ndcg5(k)})
    panels = RL_PANELS + ((("validation N@5", tuple((k, k) for k in val_keys), RATE),) if val_keys else ())
    return _line_figure(lines, panels, "RL (DAPO)", path, "rl/log.jsonl")


def _is_validation_ndcg5(key: str) -> bool:
    k = key.lower()
    return ("val/" in k or "eval" in k or k.startswith("val_")) and any(
        s in k for s in ("n@5", "ndcg@5", "ndcg_5", "ndcg5"))


def _line_figure(lines: Sequence[Mapping[str, Any]], panels, title: str, path: Path, source: str) -> Path | None:
    """One panel per ``(title, ((key, label), ...), y-limits)`` that has a logged value; ``None`` if none has."""
    drawn = [(name, [(label, *_series(lines, key)) for key, label in keys], ylim) for name, keys, ylim in panels]
    drawn = [(name, [s for s in series if s[1]], ylim) for name, series, ylim in drawn]
    drawn = [panel for panel in drawn if panel[1]]
    if not drawn:
        log.info("report: %s has no logged step, %s plot skipped", source, title)
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = min(2, len(drawn))
    rows = math.ceil(len(drawn) / cols)
    fig = Figure(figsize=(5.5 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, series, ylim) in zip(axes, drawn):
        for label, xs, ys in series:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    fig.suptitle(f"{title} ({source})")
    return _save(fig, path)


def _series(lines: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of the lines that logged a number under ``key``; the step is the line's
    ``step`` (TRL's global step), else its 1-based position."""
    xs, ys = [], []
    for i, line in enumerate(lines, start=1):
        value = line.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(float(line.get("step", i)))
            ys.append(float(value))
    return xs, ys


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


# -- a run's plots --------------------------------------------------------------------------------
def training_curves(run_path: Path, out_dir: Path) -> dict[str, Path]:
    """The training plots of the stages that were run (``midtrain``, ``sft``, ``rl``), by stage."""
    run_path = Path(run_path)
    sources = {
        "midtrain": (midtrain_curves, read_optional_json(run_path / "midtrain" / "metrics.json")),
        "sft": (sft_curves, read_optional_json(run_path / "sft" / "metrics.json")),
        "rl": (rl_curves, read_jsonl(run_path / "rl" / "log.jsonl") or None),
    }
    made: dict[str, Path] = {}
    for stage, (plot, artifact) in sources.items():
        if artifact is None:
            log.info("report: no %s artifacts, %s plot skipped", stage, stage)
        elif (path := _attempt(plot, artifact, out_dir / PLOT_FILES[stage])) is not None:
            made[stage] = path
    curves = curve_sources(run_path)
    if curves and (path := _attempt(learning_curves, curves, out_dir / PLOT_FILES["sft_curve"])) is not None:
        made["sft_curve"] = path
    return made


def make_plots(run_path: Path) -> dict[str, Path]:
    """Every plot the run's artifacts allow, under ``<run>/report/``: keys of :data:`PLOT_FILES`.
    A PNG left by an earlier report whose artifact is gone is removed, so the folder matches the
    report."""
    run_path = Path(run_path)
    out_dir = run_path / PLOTS_DIR
    made = training_curves(run_path, out_dir)
    results = read_optional_json(run_path / "eval" / "results.json")
    if results is None:
        log.info("report: no eval/results.json, metric bars skipped")
    elif (bars := _attempt(metric_bars, results, out_dir / PLOT_FILES["metrics"])) is not None:
        made["metrics"] = bars
    for name, file in PLOT_FILES.items():
        if name not in made:
            (out_dir / file).unlink(missing_ok=True)
    return made


def _attempt(plot: Any, artifact: Any, path: Path) -> Path | None:
    """``plot(artifact, path)``; an artifact in an unexpected shape (an older format) skips the plot
    with a warning instead of failing the whole report."""
    try:
        return plot(artifact, path)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        log.warning("report: %s failed on %s (%s: %s), plot skipped", plot.__name__, path.name,
                    type(exc).__name__, exc)
        return None
