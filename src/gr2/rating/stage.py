"""The ``rating`` stage (docs/rating.md): rating prediction on explicit ratings, RecZero-style.

Reads ``data/interactions.parquet`` (with its ``rating`` column) and ``data/items.parquet``; writes
under ``rating/``:

* ``results.json`` — per system, RMSE and MAE with 95% bootstrap intervals on every user of the
  split (baselines) and on the LLM sample (every row); per LLM row the share of answers with a usable
  rating, the share in the full format, the parse statuses; the RL run's settings and log; timings;
* ``results.md`` — the same as two tables;
* ``outputs/<row>.jsonl`` — each LLM answer with its parse and prediction;
* ``zero_shot.json`` — the student's zero-shot answers and the key of what decided them (the student's
  files, the prompts, the generation settings: :func:`zero_shot_key`); a re-run of the stage (another
  RL setting, ``--force``) reads them back instead of generating them again when the key is the same;
* ``model/`` — the RL-trained student (``tb/`` its TensorBoard logs; ``checkpoints/`` while training).

An LLM answer without a usable rating is scored as the global mean (and counted), so every row is
scored on the same users.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gr2.lists import seeded_sample
from gr2.metrics.rating import rating_errors
from gr2.prompts.rating import STATUSES, parse_rating
from gr2.rating import baselines
from gr2.rating.config import RatingConfig
from gr2.rating.data import Example, examples, fit_ratings, rated_sequences
from gr2.runs import (
    RunDir,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
)

log = logging.getLogger(__name__)

OUTPUTS = ("rating/results.json", "rating/results.md", "rating/model/config.json")
ZERO_SHOT, AFTER_RL = "student zero-shot", "student after pure RL"
ZERO_SHOT_FILE = "zero_shot.json"


def run_rating(run: RunDir, cfg: RatingConfig) -> dict[str, Any]:
    """Baselines on every user of the split, the student's answers on a sample of them before and
    after pure RL, then the tables (module docstring)."""
    from gr2.llm.registry import load
    from gr2.rating.llm import answers, prompts, train_rl
    from gr2.runs import model_source

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    out = run.stage_dir("rating")
    sequences = rated_sequences(pd.read_parquet(run.file("data", "interactions.parquet")))
    items_df = pd.read_parquet(run.file("data", "items.parquet"))
    items = {int(i): (str(t), list(c)) for i, t, c in zip(items_df["item_id"], items_df["title"],
                                                         items_df["categories"])}
    scored = examples(sequences, cfg.split, cfg.max_history)
    fit = fit_ratings(sequences, cfg.split)
    users = np.array([e.user for e in scored])
    item_ids = np.array([e.item for e in scored])
    true = np.array([e.rating for e in scored])
    mean = float(fit["rating"].mean())
    preds = {
        "global mean": baselines.global_mean(fit, users, item_ids),
        "item mean": baselines.item_mean(fit, users, item_ids),
        "matrix factorisation (SVD)": baselines.matrix_factorisation(
            fit, users, item_ids, cfg.mf_factors, cfg.mf_epochs, cfg.mf_lr, cfg.mf_reg, cfg.seed),
    }
    lap("baselines")
    chosen = seeded_sample(scored, cfg.eval_examples, cfg.seed)
    rows = np.searchsorted(users, [e.user for e in chosen])  # examples are in user order
    log.info("rating: %d %s users (%d fit ratings); LLM rows on %d", len(scored), cfg.split, len(fit), len(chosen))

    source = model_source(run, cfg.model)
    model, tok = load(source)
    eval_prompts = prompts(chosen, items, tok, cfg.item_noun)
    llm: dict[str, dict[str, Any]] = {}
    zero_shot = zero_shot_answers(out / ZERO_SHOT_FILE, model, tok, eval_prompts, cfg, source)
    llm[ZERO_SHOT] = _score_answers(zero_shot, mean)
    lap("zero_shot")

    train = seeded_sample(examples(sequences, "train", cfg.max_history), cfg.train_examples, cfg.seed)
    if not train:
        raise RuntimeError("rating: no user has a rating before their validation rating to train RL on "
                           "(every user needs at least 4 ratings)")
    rl_rows = [{"prompt": p, "true_rating": e.rating} for p, e in zip(prompts(train, items, tok, cfg.item_noun), train)]
    model, info = train_rl(model, tok, rl_rows, cfg, out)
    lap("rl")
    llm[AFTER_RL] = _score_answers(answers(model, tok, eval_prompts, cfg), mean)
    lap("after_rl")

    systems = {name: {"all": rating_errors(p, true, cfg.bootstrap, cfg.seed),
                      "sample": rating_errors(p[rows], true[rows], cfg.bootstrap, cfg.seed)}
               for name, p in preds.items()}
    for name, row in llm.items():
        systems[name] = {"sample": rating_errors(row.pop("pred"), true[rows], cfg.bootstrap, cfg.seed)}
        _write_outputs(out / "outputs" / f"{name.replace(' ', '-')}.jsonl", chosen, row.pop("answers"))
    results = {
        "split": cfg.split, "users": len(scored), "fit_ratings": len(fit), "sample": len(chosen),
        "global_mean": mean, "model": source, "systems": systems, "llm": llm,
        "rl": {"prompts": len(rl_rows), **info}, "seconds": seconds,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", render_results(results))
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {"users": len(scored), "sample": len(chosen), "rl_steps": info["global_step"],
            **{f"rmse {name}": round(s["sample"]["rmse"], 4) for name, s in systems.items()}}


def zero_shot_key(source: str, model: Any, texts: Sequence[str], cfg: RatingConfig) -> str:
    """Hash of what decides the zero-shot answers: the student (its resolved folder with each file's
    size and modification time, so a retrained or reinstalled model is another; where and in what
    precision it runs), the prompt texts (the sampled examples, the items, ``max_history``, the noun,
    the chat template) and the generation settings (:func:`gr2.rating.llm.answer_settings`)."""
    from gr2.llm.registry import resolve
    from gr2.rating.llm import answer_settings

    folder = resolve(source).resolve()
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in folder.rglob("*") if p.is_file())
    settings = answer_settings(cfg)
    payload = {
        "model": {"folder": str(folder), "files": files, "device": str(getattr(model, "device", "")),
                  "dtype": str(getattr(model, "dtype", ""))},
        "prompts": hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest(),
        "params": settings["params"].to_dict(), "batch_size": settings["batch_size"],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def zero_shot_answers(path: Path, model: Any, tokenizer: Any, texts: Sequence[str], cfg: RatingConfig,
                      source: str) -> list[str]:
    """The student's answers to ``texts`` before RL: those saved in ``path`` when they were made under
    the same :func:`zero_shot_key`, else generated (:func:`gr2.rating.llm.answers`) and saved there."""
    from gr2.rating.llm import answers

    key = zero_shot_key(source, model, texts, cfg)
    try:
        saved = read_json(path)
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("key") == key and len(saved.get("answers") or ()) == len(texts):
        log.info("rating: zero-shot answers read from %s (same student, prompts and settings)", path)
        return [str(a) for a in saved["answers"]]
    generated = answers(model, tokenizer, texts, cfg)
    atomic_write_json(path, {"key": key, "answers": generated})
    return generated


def _score_answers(texts: list[str], fallback: float) -> dict[str, Any]:
    """Predictions (the answer's rating, else ``fallback``) and what the answers were."""
    parsed = [parse_rating(t) for t in texts]
    statuses = Counter(p.status for p in parsed)
    return {
        "pred": np.array([fallback if p.rating is None else p.rating for p in parsed]),
        "rated_rate": float(np.mean([p.rating is not None for p in parsed])),
        "format_rate": float(np.mean([p.format_ok for p in parsed])),
        "statuses": {s: statuses[s] for s in STATUSES if statuses[s]},
        "answers": [(t, p.status, p.rating) for t, p in zip(texts, parsed)],
    }


def _write_outputs(path: Path, chosen: list[Example], answered: list[tuple[str, str, float | None]]) -> None:
    rows = pd.DataFrame([{"user": e.user, "item": e.item, "true": e.rating, "status": status, "rating": rating,
                          "answer": text} for e, (text, status, rating) in zip(chosen, answered)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        rows.to_json(tmp, orient="records", lines=True, force_ascii=False)


def _ci(m: dict[str, Any], key: str) -> str:
    return f"{m[key]:.4f} [{m[key + '_lo']:.4f}, {m[key + '_hi']:.4f}]"


def render_results(r: dict[str, Any]) -> str:
    """``results.md``: the baselines on every user, then every row on the LLM sample."""
    everyone = [name for name, s in r["systems"].items() if "all" in s]
    lines = [
        f"# Rating prediction ({r['split']})\n",
        (f"Each user's {'last' if r['split'] == 'test' else 'second-to-last'} rating; baselines fitted on the "
         f"{r['fit_ratings']:,} ratings before them. RMSE and MAE with 95% bootstrap intervals.\n"),
        f"## Baselines, all {r['users']:,} users\n",
        "| system | RMSE | MAE |", "|---|---|---|",
        *(f"| {n} | {_ci(r['systems'][n]['all'], 'rmse')} | {_ci(r['systems'][n]['all'], 'mae')} |" for n in everyone),
        f"\n## Every row on the LLM sample ({r['sample']:,} users)\n",
        (f"The student is `{r['model']}`; pure RL: {r['rl']['global_step']} DAPO step(s) on "
         f"{r['rl']['prompts']:,} prompts. An answer without a usable rating counts as the global mean "
         f"({r['global_mean']:.3f}).\n"),
        "| system | RMSE | MAE | usable rating | full format |", "|---|---|---|---:|---:|",
    ]
    for name, s in r["systems"].items():
        extra = r["llm"].get(name)
        rates = f"{extra['rated_rate']:.0%} | {extra['format_rate']:.0%}" if extra else "— | —"
        lines.append(f"| {name} | {_ci(s['sample'], 'rmse')} | {_ci(s['sample'], 'mae')} | {rates} |")
    lines.append("\nAnswers by parse status (docs/rating.md):\n")
    for name, extra in r["llm"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in extra["statuses"].items()))
    return "\n".join(lines) + "\n"
