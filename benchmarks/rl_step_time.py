"""Seconds per RL (DAPO) step, split into generation, reward and optimisation (issue #6).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rl_step_time.py --run-dir runs/beauty-medium \
        --model sft --steps 3 --num-generations 4 8 --max-completion-length 384 --reasoning \
        --threads 2 --out runs/bench/rl_step_time.json

    # without an SFT model yet: the 135M base model (it never writes a valid answer, so every
    # completion runs to L_max and dynamic sampling always uses every resample round: worst case)
    ... --model smollm2-135m ...

Cost on 2 idle cores: ~6-7 min per step at G 4 and roughly twice that at G 8 (2 prompts,
<= 384 tokens, the rl settings of the reasoning-format run of the profile then called quick;
BENCHMARKS.md), so ~1 h for the command above.

Runs the real ``rl`` stage trainer (``gr2.rl.stage.train_rl``: ``DAPOTrainer`` with dynamic sampling
on TRL's ``GRPOTrainer``, ``grpo_args``) for ``--steps`` steps once per group size G, each time from
the same starting policy (``--model``: ``sft``, ``midtrain`` or anything ``gr2.llm.registry.load``
resolves, e.g. ``smollm2-135m``), on the run's ``candidates/<split>.parquet`` lists with the run's
own ``rl`` config (``<run-dir>/config.yaml``; ``--set rl.field=value`` overrides it). Per step:

* **step** — wall time from the trainer's ``on_step_begin`` to ``on_step_end`` (every micro-batch,
  the optimiser update);
* **generation** — time inside ``GRPOTrainer._generate`` (sampling the G completions of every
  prompt), summed over every generation round of the step (dynamic sampling may add rounds);
* **reward** — time inside ``DAPOTrainer._calculate_rewards`` (parsing and scoring completions);
* **optimisation** — step − generation − reward: the log-prob forward passes, backward, clipping,
  the optimiser update and TRL's bookkeeping;
* completion tokens per completion (mean, generated tokens before padding) and generation rounds.

Timing hooks are wrapped onto the trainer class by this script only (nothing in ``src`` changes).
The table reports means over steps 2..N (step 1 warms up); the JSON (``--out``) holds every step,
the machine (cores, torch threads, load average) and the date. Wall times on a shared machine are
upper bounds; ``step CPU s`` is this process's CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from gr2.config import run_rl_config

PARTS = ("generation", "reward")


# --------------------------------------------------------------------------- configuration and data


def training_rows(run_dir: Path, cfg: Any, model: str) -> tuple[str, list[dict[str, Any]]]:
    """The policy to load (``model`` resolved against the run) and the prompt rows the ``rl`` stage
    would train on (``gr2.rl.stage.select_lists`` + ``prompt_rows``)."""
    from gr2.llm.registry import load
    from gr2.prompts.items import load_item_texts
    from gr2.rl.stage import prompt_rows, select_lists
    from gr2.runs import RunDir, model_source

    run = RunDir(run_dir)
    lists = pd.concat([pd.read_parquet(run.file("candidates", f"{s}.parquet")) for s in cfg.split],
                      ignore_index=True)
    source = model_source(run, model)
    _, tok = load(source)
    return source, prompt_rows(select_lists(lists, cfg), load_item_texts(run), tok, cfg.prompt_config)


# --------------------------------------------------------------------------- timing hooks
class StepTimer:
    """Accumulates the time spent in the wrapped methods during each trainer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._cur: dict[str, float] = {}
        self._t0 = self._cpu0 = 0.0

    def add(self, part: str, seconds: float) -> None:
        self._cur[part] = self._cur.get(part, 0.0) + seconds

    def begin(self) -> None:
        self._cur = {p: 0.0 for p in PARTS} | {"rounds": 0, "completions": 0, "tokens": 0}
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()

    def end(self) -> None:
        step = time.perf_counter() - self._t0
        rec = dict(self._cur, step=step, cpu=time.process_time() - self._cpu0)
        rec["optimisation"] = step - sum(rec[p] for p in PARTS)
        rec["completion_tokens_mean"] = rec["tokens"] / rec["completions"] if rec["completions"] else 0.0
        self.steps.append(rec)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class Bracket(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' API
                timer.begin()

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' API
                timer.end()

        return Bracket()


def _timed(method: Any, timer: StepTimer, part: str) -> Any:
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = method(self, *args, **kwargs)
        timer.add(part, time.perf_counter() - t)
        if part == "generation":  # out[1]: the completions' token ids, before padding
            timer.add("rounds", 1)
            timer.add("completions", len(out[1]))
            timer.add("tokens", sum(len(ids) for ids in out[1]))
        return out

    return wrapper


@contextlib.contextmanager
def instrumented(timer: StepTimer) -> Iterator[None]:
    """Wrap ``DAPOTrainer`` so that every instance built inside the block times its generation
    and reward calls into ``timer`` and carries the step-bracketing callback; restored after."""
    from gr2.training.dapo import DAPOTrainer

    cls = DAPOTrainer
    saved = {name: cls.__dict__.get(name) for name in ("_generate", "_calculate_rewards", "__init__")}
    init = cls.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.add_callback(timer.callback())

    cls._generate = _timed(cls._generate, timer, "generation")
    cls._calculate_rewards = _timed(cls._calculate_rewards, timer, "reward")
    cls.__init__ = __init__
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:  # inherited from GRPOTrainer: drop our override
                delattr(cls, name)
            else:
                setattr(cls, name, value)


# --------------------------------------------------------------------------- benchmark
def time_group_size(source: str, rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, float]]:
    """Per-step timings of ``cfg.steps`` DAPO steps from a fresh copy of the policy ``source``."""
    from gr2.llm.registry import load
    from gr2.rl.stage import train_rl

    model, tok = load(source)
    timer = StepTimer()
    with instrumented(timer), tempfile.TemporaryDirectory(prefix="rl_step_time-") as out:
        train_rl(model, tok, rows, cfg, Path(out))
    return timer.steps


def summarise(steps: list[dict[str, float]]) -> dict[str, float]:
    """Means over the steps after the first (the first warms up) — over all when there is one."""
    timed = steps[1:] or steps
    keys = ("step", *PARTS, "optimisation", "cpu", "completion_tokens_mean", "rounds")
    return {k: sum(s[k] for s in timed) / len(timed) for k in keys} | {"steps_averaged": len(timed)}


def machine_info() -> dict[str, Any]:
    import torch
    import trl

    return {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "load_avg_1_5_15": os.getloadavg(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "trl": trl.__version__}


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| G | step s | generation s | reward s | optimisation s | completion tokens mean | "
             "gen. rounds | step CPU s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["mean"]
        lines.append(f"| {r['num_generations']} | {m['step']:.2f} | {m['generation']:.2f} | {m['reward']:.3f} | "
                     f"{m['optimisation']:.2f} | {m['completion_tokens_mean']:.1f} | {m['rounds']:.1f} | "
                     f"{m['cpu']:.2f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="run with candidates/, data/, sid/")
    ap.add_argument("--model", default="sft", help="sft | midtrain | registry name | model folder")
    ap.add_argument("--steps", type=int, default=3, help="steps per G (the first is a warm-up)")
    ap.add_argument("--num-generations", type=int, nargs="+", default=[4, 8], help="group sizes G")
    ap.add_argument("--max-completion-length", type=int, help="L_max (default: the run's rl config)")
    ap.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                    help="reasoning prompts (default: the run's rl config)")
    ap.add_argument("--batch-size", type=int, help="prompts per step (default: the run's rl config)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="rl.FIELD=VALUE",
                    help="override the run's config (repeatable)")
    ap.add_argument("--out", type=Path, help="write the JSON here")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    # save_steps past the end: no checkpoint is written (nor timed) during the run
    base = run_rl_config(args.run_dir, args.overrides, steps=args.steps,
                     max_completion_length=args.max_completion_length, reasoning=args.reasoning,
                     batch_size=args.batch_size, num_threads=args.threads, save_steps=args.steps + 1,
                     logging_steps=1, device="cpu")
    source, rows = training_rows(args.run_dir, base, args.model)
    results = []
    for g in args.num_generations:
        cfg = dataclasses.replace(base, num_generations=g)
        steps = time_group_size(source, rows, cfg)
        results.append({"num_generations": g, "batch_size": cfg.batch_size,
                        "max_completion_length": cfg.max_completion_length, "reasoning": cfg.reasoning,
                        "mean": summarise(steps), "steps": steps})
        print(f"G={g}: {results[-1]['mean']}", flush=True)
    report = {"model": source, "run_dir": str(args.run_dir), "lists": len(rows), "machine": machine_info(),
              "results": results}
    print(f"\n{report['machine']['date']}, {report['machine']['cores_usable']} cores, "
          f"{report['machine']['torch_threads']} torch threads, load {report['machine']['load_avg_1_5_15']}; "
          f"{source}, {len(rows)} lists\n")
    print(markdown_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
