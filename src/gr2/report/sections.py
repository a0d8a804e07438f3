"""The sections of ``report.md``, in pipeline order: one renderer per section, taking the run's
:class:`~gr2.report.markdown.Context` and returning the section body (Markdown, without its ``##``
title). Each body names the file its numbers come from; :mod:`gr2.report.build` calls a renderer
only when that file exists and writes "not run" otherwise."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import yaml

from gr2.eval.report import HEADLINE, REFERENCE
from gr2.metrics.bootstrap import format_p_value
from gr2.report.artifacts import llm_systems, retrieval_results
from gr2.report.markdown import (
    Context,
    fmt,
    kv_table,
    not_run,
    pct,
    secs,
    source,
    table,
)
from gr2.runs import read_jsonl
from gr2.stages import STAGE_NAMES

RETRIEVAL_METRICS = ("R@5", "R@10", "N@5", "N@10")
CI_METRICS = (HEADLINE, "R@1")


def reproduce(ctx: Context) -> str:
    """``manifest.json``: the git commit and the run's own ``config.yaml`` → one command."""
    commit = ctx.manifest.get("git_commit")
    lines = [source("manifest.json", "config.yaml"),
             ("Every number in this report is read from the file its section names (paths relative to "
             f"the run directory `{ctx.run}`). To redo the whole run from scratch:"), "", "```bash"]
    if commit:
        lines.append(f"git checkout {commit.removesuffix('-dirty')}")
    lines += [f"gr2 run --config {ctx.run / 'config.yaml'} --out {ctx.run}-repro", "```", ""]
    if commit is None:
        lines.append("The git commit was not recorded (gr2 was not run from a git checkout).")
    elif commit.endswith("-dirty"):
        lines.append("**The working tree had uncommitted changes** when the run was configured: the commit "
                     "alone does not pin the code that produced these numbers.")
    lines.append("Each section also names the command that recomputes its numbers in place "
                 "(`--force` redoes a finished stage; a stage command reuses the run's `config.yaml`).")
    return "\n".join(lines) + "\n"


def dataset(ctx: Context) -> str:
    """``data/stats.json``: sizes after filtering and what each filter removed."""
    s = ctx.read("data/stats.json")
    overview = kv_table({
        "dataset": s.get("dataset"), "users": s.get("users"), "items": s.get("items"),
        "interactions": s.get("interactions"), "mean history length": s.get("avg_history_len"),
        "median history length": s.get("median_history_len"), "longest history": s.get("max_history_len"),
        f"histories longer than the cap ({s.get('max_history')})": s.get("histories_longer_than_cap"),
        "items without text": s.get("items_without_text"),
    })
    filtering = table(["filter", "count"], list((s.get("filtering") or {}).items()))
    return "\n".join([source("data/stats.json"), overview, "Filtering:", "", filtering,
                      f"Recompute: {ctx.gr2('data --run-dir RUN --force')}\n"])


def sids(ctx: Context) -> str:
    """``sid/report.json``: uniqueness before and after collision resolution, codebook use per level."""
    r = ctx.read("sid/report.json")
    raw, final = r.get("raw", {}), r.get("final", {})
    overview = kv_table({
        "method": r.get("method"), "items": r.get("items"),
        "levels × codebook size": f"{r.get('levels')} × {r.get('codebook_size')}",
        "random last levels": r.get("random_last_levels"),
        "uniqueness, learned levels only": raw.get("learned_levels_only", {}).get("uniqueness"),
        "uniqueness before resolution": raw.get("uniqueness"),
        "collisions before resolution": raw.get("collisions"),
        "uniqueness after resolution": final.get("uniqueness"),
        "items given an extra level": r.get("resolution", {}).get("extended"),
        "relative reconstruction error": r.get("reconstruction", {}).get("relative"),
        "embedding model": r.get("embedding", {}).get("model"),
        "seconds": secs(r.get("timings", {}).get("total_s")),
    })
    levels = table(["level", "codes used", "perplexity", "largest share"],
                   [[lv["level"], lv["codes_used"], lv["perplexity"], lv["max_share"]]
                    for lv in raw.get("per_level", [])])
    return "\n".join([source("sid/report.json"), overview, "Codebook use per level (before resolution):", "",
                      levels, f"Recompute: {ctx.gr2('sid --run-dir RUN --force')}\n"])


def candidates(ctx: Context) -> str:
    """``candidates/prerank.json``: the pre-ranker's full-catalogue quality and the lists kept per split."""
    r = ctx.read("candidates/prerank.json")
    splits = r.get("splits", {})
    keys = [k for k in dict.fromkeys(k for q in splits.values() for k in q) if k not in ("lists", "kept")]
    rows = [[name, q.get("lists"), q.get("kept"), *(q.get(k) for k in keys)] for name, q in splits.items()]
    head = (f"Pre-ranker `{r.get('prerank')}` (training lists: `{r.get('train_prerank')}`, never fitted on their "
            f"targets), K = {r.get('k')}, seen items excluded: {fmt(r.get('exclude_seen'))}; fit "
            f"{secs(r.get('fit_seconds'))} s + {secs(r.get('train_fit_seconds'))} s (training lists).\n")
    return "\n".join([source("candidates/prerank.json"), head,
                      table(["split", "users", "lists kept", *keys], rows),
                      f"Recompute: {ctx.gr2('candidates --run-dir RUN --force')}\n"])


def midtrain(ctx: Context) -> str:
    """``midtrain/metrics.json`` (held-out loss per task, phases) and ``eval/retrieval-<split>.json``."""
    m = ctx.read("midtrain/metrics.json")
    before, after = m.get("loss_before", {}), m.get("loss_after", {})
    per_task = m.get("train_examples_per_task", {})
    rows = []
    for task, b in before.items():
        lo, la = b.get("loss"), after.get(task, {}).get("loss")
        rows.append([task, per_task.get(task), lo, la, None if lo is None or la is None else la - lo])
    phases = [f"{name}: {fmt(p.get('global_step'))} steps, mean training loss {fmt(p.get('train_loss'))}"
              for name, p in (m.get("phases") or {}).items()]
    return "\n".join([
        source("midtrain/metrics.json"),
        f"Student `{m.get('model')}`, {fmt(m.get('sid_tokens_added'))} SID tokens added, "
        f"{fmt(m.get('train_examples'))} training examples, {fmt(m.get('heldout_examples'))} held out; "
        + ("; ".join(phases) or "no training phase") + ".\n",
        table(["task", "training examples", "held-out loss before", "after", "change"], rows),
        ctx.image("midtrain", "mid-training loss"),
        f"Recompute: {ctx.gr2('midtrain --run-dir RUN --force')}\n",
        "### Mid-trained model as a retriever\n",
        _retrieval(ctx),
    ])


def _retrieval(ctx: Context) -> str:
    found = retrieval_results(ctx.run)
    if not found:
        return not_run(ctx, None, "eval/retrieval-test.json", "eval retrieval --run-dir RUN")
    parts = []
    for split, r in found.items():
        rows = [[name, *(m.get(k) for k in RETRIEVAL_METRICS)] for name, m in r.get("systems", {}).items()]
        command = (f"eval retrieval --run-dir RUN --model {r.get('model')} --split {split} "
                   f"--sample {r.get('n_users')} --num-beams {r.get('num_beams')}")
        parts += [source(f"eval/retrieval-{split}.json"),
                  (f"Full-catalogue retrieval on {fmt(r.get('n_users'))} {split} users, beam {r.get('num_beams')}, "
                  f"{secs(r.get('ms_per_user'))} ms per user (seen items excluded).\n"),
                  table(["system", *RETRIEVAL_METRICS], rows), f"Recompute: {ctx.gr2(command)}\n"]
    return "\n".join(parts)


def traces(ctx: Context) -> str:
    """``traces/teacher_gate.json`` (teacher vs pre-rank on shuffled lists) and ``traces/stats.json``."""
    s = ctx.read("traces/stats.json")
    acc, ident, teacher = s.get("acceptance", {}), s.get("identity_copy", {}), s.get("teacher", {})
    overview = kv_table({
        "teacher": teacher.get("name"), "mode": ", ".join(s.get("modes", [])),
        "lists sampled": s.get("lists", {}).get("sampled"), "teacher calls": s.get("calls"),
        "accepted": f"{fmt(acc.get('accepted'))} of {fmt(acc.get('examples'))} ({pct(acc.get('rate'))})",
        "valid answers": pct(s.get("valid_rate")),
        "identity copy of the shown order": pct(ident.get("presented")),
        "identity copy of the pre-rank order": pct(ident.get("prerank")),
        "teacher first-try R@1 / N@5": f"{fmt(teacher.get('R@1'))} / {fmt(teacher.get('N@5'))}",
        "pre-rank order R@1 / N@5 (same lists)": f"{fmt(teacher.get('prerank_R@1'))} / {fmt(teacher.get('prerank_N@5'))}",
        "mean trace length (words, accepted)": secs(s.get("length", {}).get("accepted", {}).get("words", {}).get("mean")),
        "seconds": secs(s.get("seconds")),
    })
    attempts = table(["attempt", "tried", "accepted", "rate", "cumulative"],
                     [[a["attempt"], a["tried"], a["accepted"], pct(a["rate"]), pct(a["cumulative"])]
                      for a in acc.get("by_attempt", [])])
    return "\n".join([_gate(ctx), "### Sampled traces\n", source("traces/stats.json"), overview,
                      "Acceptance by attempt:", "", attempts,
                      f"Recompute: {ctx.gr2('traces --run-dir RUN --force')}\n"])


def _gate(ctx: Context) -> str:
    g = ctx.read("traces/teacher_gate.json")
    if g is None:
        return "### Teacher gate\n\n**Not run** (`traces.gate_lists` = 0): `traces/teacher_gate.json` does not exist.\n"
    t, p = g.get("teacher", {}), g.get("prerank", {})
    lo, hi = g.get("top1_diff_ci") or [None, None]
    verdict = "passed" if g.get("passed") else ("FAILED, overridden (`traces.gate_override`)"
                                                if g.get("override") else "FAILED")
    return "\n".join([
        "### Teacher gate\n", source("traces/teacher_gate.json"),
        f"Teacher `{g.get('teacher_name')}` against the pre-rank order on {fmt(g.get('lists'))} shuffled lists:\n",
        table(["ranker", "top-1", "R@5", "N@5", "valid answers"],
              [["teacher", t.get("top1"), t.get("R@5"), t.get("N@5"), pct(t.get("valid_rate"))],
               [REFERENCE, p.get("top1"), p.get("R@5"), p.get("N@5"), "—"]]),
        (f"Top-1 difference {fmt(g.get('top1_diff'))}, 95% paired-bootstrap CI [{fmt(lo)}, {fmt(hi)}], "
        f"p = {format_p_value(g.get('p_value'), g.get('n_boot'))}: **{verdict}**.\n"),
    ])


def _prior_text(prior: dict | None) -> str:
    """``P(target at position 1..K)`` and the learnt scale of the model's part, or ``none``."""
    if not prior:
        return "none"
    shares = ", ".join(f"{math.exp(x):.2f}" for x in prior["log_prior"])
    return f"P(target at shown position) {shares}; model scale {prior['model_scale']}"


def sft(ctx: Context) -> str:
    """``sft/metrics.json``: data, objective and weights, the loss parts at the first and last logged
    step; ``sft/curve.jsonl``: the learning curve."""
    m = ctx.read("sft/metrics.json")
    d = m.get("data", {})
    if m.get("objective") == "listwise":
        w = m.get("weights", {})
        overview = kv_table({
            "initial model": m.get("init"), "objective": "listwise (gr2.sft.listwise)",
            "weights (cross-entropy / distillation, T)": f"{w.get('ce')} / {w.get('distill')}, {w.get('temperature')}",
            "training lists (shown shuffled)": f"{fmt(d.get('lists'))} ({fmt(d.get('shuffled'))})",
            "lists seen": fmt(d.get("lists_seen")), "steps": m.get("steps"),
            "position prior (learnt model scale)": _prior_text(m.get("position_prior")),
            "mean training loss": m.get("train_loss_mean"), "seconds": secs(m.get("seconds")),
        })
        keys = ("loss", "ce", "distill", "top1", "model_scale") if m.get("position_prior") else \
            ("loss", "ce", "distill", "top1")
    else:
        overview = kv_table({
            "initial model": m.get("init"),
            "λ reasoning / λ ranking": f"{m.get('lambda_reasoning')} / {m.get('lambda_ranking')}",
            "examples (truncated)": f"{fmt(d.get('examples'))} ({fmt(d.get('truncated'))})",
            "tokens (reasoning / ranking)": f"{fmt(d.get('tokens'))} ({fmt(d.get('reasoning_tokens'))} / "
                                            f"{fmt(d.get('ranking_tokens'))})",
            "steps": m.get("steps"), "mean training loss": m.get("train_loss_mean"),
            "tokens per second": secs(m.get("tokens_per_second")), "seconds": secs(m.get("seconds")),
        })
        keys = ("loss", "nll_reasoning", "nll_ranking")
    curve = table(["logged", "first step", "last step"], [[k, m.get(f"{k}_start"), m.get(f"{k}_end")] for k in keys])
    return "\n".join([source("sft/metrics.json"), overview, curve, ctx.image("sft", "SFT loss"),
                      _learning_curve(ctx), f"Recompute: {ctx.gr2('sft --run-dir RUN --force')}\n"])


def _learning_curve(ctx: Context) -> str:
    """The points of ``sft/curve.jsonl`` (validation N@5 by training lists seen) and the plot."""
    points = read_jsonl(ctx.run / "sft" / "curve.jsonl")
    if not points:
        return ""
    rows = [[p["step"], fmt(p["lists_seen"]), p.get("R@1"), p.get("N@5"), p.get("prerank_N@5")] for p in points]
    return "\n".join([source("sft/curve.jsonl"),
                       f"Learning curve: direct scoring of {points[0].get('lists', '?')} validation lists, "
                       "shown in the trained order, as training goes.\n",
                       table(["step", "lists seen", "val R@1", "val N@5", "pre-rank N@5 (same lists)"], rows),
                       ctx.image("sft_curve", "SFT learning curve")])


def rl(ctx: Context) -> str:
    """``rl/metrics.json`` (policy, lists, first / last / mean of the main log fields) and ``rl/log.jsonl``."""
    m = ctx.read("rl/metrics.json")
    cfg, summary = m.get("config", {}), m.get("log", {})
    rows = [[k, v.get("first"), v.get("last"), v.get("mean")] for k, v in summary.items() if isinstance(v, dict)]
    n_lines = len(read_jsonl(ctx.run / "rl" / "log.jsonl"))
    return "\n".join([
        source("rl/metrics.json", "rl/log.jsonl"),
        (f"Policy `{m.get('policy')}`, reward `{cfg.get('reward')}`, {fmt(m.get('lists'))} of "
        f"{fmt(m.get('lists_available'))} lists, {fmt(m.get('train', {}).get('global_step'))} steps "
        f"({n_lines} logged; {fmt(summary.get('steps_not_filled'))} without a full batch after dynamic sampling), "
        f"{secs(m.get('seconds'))} s.\n"),
        table(["logged", "first", "last", "mean"], rows),
        ctx.image("rl", "RL training curves"),
        f"Recompute: {ctx.gr2('rl --run-dir RUN --force')}\n",
    ])


def results(ctx: Context) -> str:
    """``eval/results.json`` (means, 95% CIs, paired tests), ``eval/systems/*.json`` (LLM rows' valid
    and identity-copy rates) and ``eval/results.md`` (the full table, verbatim)."""
    r = ctx.read("eval/results.json")
    split = r.get("split", "test")
    parts = [source("eval/results.json"),
             (f"{fmt(r.get('n_lists'))} {split} lists. Means with 95% bootstrap CIs; Δ: relative change against "
             f"the {REFERENCE} with its 95% paired-bootstrap CI and two-sided p-value "
             f"({fmt(ctx.bootstrap)} resamples).\n"),
             _ci_table(ctx, r.get("systems", {}))]
    if r.get("subsets"):
        parts += [("LLM rows scored on a sample of the lists, each next to the pre-rank order on the same lists "
                  "(`subsets` in the same file):\n"), _subset_table(ctx, r["subsets"])]
    parts += [ctx.image("metrics", "N@5 and R@1 per system"), "### LLM rows\n", _llm_rows(ctx, split)]
    md = ctx.run / "eval" / "results.md"
    if md.is_file():
        parts += ["### Full table\n", source("eval/results.md"),
                  re.sub(r"^###", "####", md.read_text(encoding="utf-8"), flags=re.MULTILINE)]  # under "### Full table"
    parts.append(f"Recompute: {ctx.gr2('eval --run-dir RUN --force')}\n")
    return "\n".join(parts)


def rating(ctx: Context) -> str:
    """``rating/results.json`` (the RL run, timings) and ``rating/results.md`` (the tables, verbatim)."""
    r = ctx.read("rating/results.json")
    rl, took = r.get("rl", {}), r.get("seconds", {})
    md = (ctx.run / "rating" / "results.md").read_text(encoding="utf-8")
    md = re.sub(r"^(#+) ", r"##\1 ", md, flags=re.MULTILINE)  # its headings under this section's
    return "\n".join([
        source("rating/results.json", "rating/results.md"),
        (f"Pure RL: {fmt(rl.get('global_step'))} DAPO step(s) on {fmt(rl.get('prompts'))} prompts "
         f"({secs(rl.get('seconds'))} s, {rl.get('device', '—')}). Seconds: "
         + ", ".join(f"{k} {secs(v)}" for k, v in took.items()) + ".\n"),
        md,
        f"Recompute: {ctx.gr2('rating --run-dir RUN --force')}\n",
    ])


def _ci_table(ctx: Context, systems: dict[str, Any]) -> str:
    header = ["system", *(f"{k} [95% CI]" for k in CI_METRICS), *(f"Δ{k} vs pre-rank" for k in CI_METRICS)]
    return table(header, [[name, *_with_ci(row), *_deltas(ctx, row)] for name, row in systems.items()])


def _subset_table(ctx: Context, subsets: dict[str, Any]) -> str:
    header = ["system", "lists", *(f"{k} [95% CI]" for k in CI_METRICS),
              *(f"{REFERENCE} {k} (same lists)" for k in CI_METRICS), *(f"Δ{k} vs pre-rank" for k in CI_METRICS)]
    rows = []
    for name, sub in subsets.items():
        systems = sub.get("systems", {})
        row, ref = systems.get(name, {}), systems.get(REFERENCE, {})
        rows.append([name, sub.get("n_lists"), *_with_ci(row), *_with_ci(ref), *_deltas(ctx, row)])
    return table(header, rows)


def _with_ci(row: dict[str, Any]) -> list[str]:
    """``mean [lo, hi]`` of each of :data:`CI_METRICS`."""
    cells = []
    for k in CI_METRICS:
        lo, hi = row.get("ci95", {}).get(k) or [None, None]
        cells.append(f"{fmt(row.get('metrics', {}).get(k))} [{fmt(lo)}, {fmt(hi)}]")
    return cells


def _deltas(ctx: Context, row: dict[str, Any]) -> list[str]:
    """Relative change vs the pre-rank order, its paired-bootstrap CI and p-value, per metric."""
    cells = []
    for k in CI_METRICS:
        c = row.get("vs_prerank", {}).get(k)
        cells.append("—" if c is None else f"{c['rel_diff']:+.1%} [{c['rel_lo']:+.1%}, {c['rel_hi']:+.1%}], "
                                           f"p={format_p_value(c['p_value'], ctx.bootstrap)}")
    return cells


def _llm_rows(ctx: Context, split: str) -> str:
    systems = llm_systems(ctx.run, split)
    if not systems:
        return f"No LLM row: `eval/systems/` has no {split} system ({ctx.gr2('eval rerank --run-dir RUN')} adds one).\n"
    rows = []
    for s in systems.values():
        sm = s.get("summary", {})
        errors = ", ".join(f"{k} {v}" for k, v in (sm.get("errors") or {}).items() if k != "ok" and v) or "none"
        rows.append([s.get("name"), f"`{s.get('model')}`", s.get("mode", "reasoning"),
                     (s.get("prompt") or {}).get("order", "—"), s.get("n_lists"), pct(sm.get("valid_rate")),
                     pct(sm.get("identity_rate_presented")), pct(sm.get("identity_rate_prerank")), errors,
                     fmt(sm.get("mean_output_tokens"), 1)])
    return "\n".join([
        source(*systems),
        ("Invalid answers are scored after repair (unlisted candidates appended in pre-rank order); identity "
         "copy: share of valid answers equal to the shown order / to the pre-rank order. Rows of "
         f"`eval.llm_models` are recomputed with the table; one added by hand with {ctx.gr2('eval rerank --run-dir RUN')} "
         "(`--model`, `--name`, `--split`, `--sample`, `--mode` as in the row).\n"),
        table(["row", "model", "mode", "order shown", "lists", "valid answers", "identity copy (shown)",
               "identity copy (pre-rank)", "parse errors", "mean answer tokens"], rows),
    ])


def timings(ctx: Context) -> str:
    """``manifest.json``: status and wall-clock seconds of every stage."""
    stages = ctx.manifest.get("stages", {})
    names = [n for n in STAGE_NAMES if n in stages] + [n for n in stages if n not in STAGE_NAMES]
    rows = [[n, stages[n].get("status"), secs(stages[n].get("seconds")), stages[n].get("started", "—"),
             stages[n].get("finished", "—")] for n in names]
    total = sum(stages[n].get("seconds") or 0 for n in names if stages[n].get("status") == "done")
    return "\n".join([source("manifest.json"), table(["stage", "status", "seconds", "started", "finished"], rows),
                      f"Total of the finished stages: {total:,.1f} s.\n"])


def configuration(ctx: Context) -> str:
    """``config.yaml`` verbatim (``manifest.json``'s config when it is missing), commit and versions."""
    path = ctx.run / "config.yaml"
    text = path.read_text(encoding="utf-8") if path.is_file() else yaml.safe_dump(ctx.manifest.get("config"),
                                                                                  sort_keys=False)
    versions = ", ".join(f"{k} {v}" for k, v in (ctx.manifest.get("versions") or {}).items())
    return "\n".join([
        source("config.yaml", "manifest.json"),
        (f"Git commit: `{ctx.manifest.get('git_commit')}`. Run created {ctx.manifest.get('created', '—')}; "
        f"report written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}.\n"),
        f"Packages: {versions or '—'}.\n",
        "<details><summary>config.yaml</summary>\n", "```yaml", text.rstrip(), "```", "</details>\n",
    ])
