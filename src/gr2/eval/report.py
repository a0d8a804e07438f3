"""Results tables: per-system metrics with bootstrap intervals and a paired test against the
pre-rank order, as JSON (for machines) and Markdown (for people)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gr2.metrics.bootstrap import bootstrap_ci, format_p_value, paired_bootstrap

REFERENCE = "pre-rank order"
HEADLINE = "N@5"


def summarise(
    per_list: Mapping[str, Mapping[str, np.ndarray]], keys: list[str], n_boot: int, seed: int
) -> dict:
    """``per_list[system][metric]`` → means, 95% CIs and paired comparisons with the reference."""
    ref = per_list[REFERENCE]
    out: dict = {}
    for system, values in per_list.items():
        row: dict = {"metrics": {}, "ci95": {}, "vs_prerank": {}}
        for key in keys:
            mean, lo, hi = bootstrap_ci(values[key], n_boot=n_boot, seed=seed)
            row["metrics"][key] = mean
            row["ci95"][key] = [lo, hi]
            if system != REFERENCE:
                row["vs_prerank"][key] = paired_bootstrap(ref[key], values[key], n_boot=n_boot, seed=seed)
        out[system] = row
    return out


def markdown_table(systems: Mapping[str, dict], keys: list[str], n_lists: int, title: str, n_boot: int) -> str:
    """One row per system; the last column is the relative N@5 change vs the pre-rank order."""
    cols = [k for k in keys if k.startswith(("R@", "N@"))]
    lines = [
        f"### {title}",
        "",
        f"{n_lists} lists. Δ{HEADLINE}: relative change against the pre-rank order, 95% paired-bootstrap "
        "interval and two-sided p-value.",
        "",
        "| system | " + " | ".join(cols) + f" | Δ{HEADLINE} vs pre-rank |",
        "|---|" + "---:|" * len(cols) + "---|",
    ]
    for name, row in systems.items():
        cells = [f"{row['metrics'][k]:.4f}" for k in cols]
        cmp = row["vs_prerank"].get(HEADLINE)
        if cmp is None:
            delta = "—"
        else:
            delta = (f"{cmp['rel_diff']:+.1%} [{cmp['rel_lo']:+.1%}, {cmp['rel_hi']:+.1%}], "
                     f"p={format_p_value(cmp['p_value'], n_boot)}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {delta} |")
    return "\n".join(lines) + "\n"
