"""Reward hacking under training: DAPO with the naive vs the conditional reward (freely sampled or
constrained to valid rankings), same policy, same data.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/reward_hacking_curves.py --run-dir runs/beauty-medium \
        --model sft --steps 50 --num-generations 4 --max-completion-length 384 --reasoning \
        --val-lists 16 --val-every 10 --threads 2 --set rl.save_steps=10 --out runs/bench/reward_hacking

    # cost on 2 idle cores: ~6-7 min per DAPO step (G 4, 2 prompts, <= 384 tokens; BENCHMARKS.md,
    # the reasoning-format run of the profile then called quick) and ~7 min per validation of
    # 16 lists: ~6 h per arm (three by default); halve it with
    # --steps 25, or use --no-reasoning --max-completion-length 128 when the policy was trained so
    # (~74 s per step; the 8-step run of docs/training.md took ~10 min per reward with
    # --val-mode direct --val-lists 50). --rewards naive conditional: the two free arms only.

    # re-draw the figure and table from the logs already written
    .venv/bin/python benchmarks/reward_hacking_curves.py --out runs/bench/reward_hacking --plot-only

For each arm of ``--rewards`` (default ``naive conditional conditional-constrained``) it trains the
run's ``rl`` stage policy (``gr2.rl.stage.train_rl``: DAPO with dynamic sampling, the run's ``rl``
config from ``<run-dir>/config.yaml`` plus ``--set rl.field=value`` and the flags) from the same
starting ``--model`` on the same ``candidates/<split>.parquet`` lists into ``<out>/<arm>/``
(``log.jsonl``, ``tb/``, ``model/``; a finished arm is not retrained, an interrupted one resumes
from its last checkpoint). An arm is a reward name (``rl.reward``), sampled freely
(``rl.constrained=false``, whatever the run's config says), or the name with ``-constrained``: the
same reward with rollouts sampled through the ranking constraint (``rl.constrained=true``,
``gr2.llm.constrained``: every answer a valid ranking of its candidates; ``--max-completion-length``
must hold a whole ranking). Then it reads every ``<out>/<arm>/log.jsonl`` and draws, per step, all
arms on the same axes (``<out>/reward_hacking.png``):

* identity-copy rate — the answer repeats the pre-rank order (``rl/copy_prerank_rate``: the hack
  the conditional reward closes, docs/method.md §7; solid) or the order shown (``rl/copy_shown_rate``:
  position copying; dashed);
* mean reward (``reward``, each under its own reward function, overlong penalty included);
* valid-output rate (``rl/valid_rate``);
* validation N@5 when ``--val-lists N`` > 0: every ``--val-every`` steps (and before the first) the
  policy re-ranks the same N seeded ``candidates/val.parquet`` lists greedily, scored as
  ``gr2 eval rerank`` does (repaired orders), written to ``<out>/<arm>/val.jsonl``.

The same numbers go to ``<out>/reward_hacking.md`` (printed too). Expect the naive reward's
pre-rank copy rate to climb while its reward rises without N@5 improving; the conditional reward
pays a copy only what the copy earns. A policy that samples no valid answer freely earns -1 for
every rollout under either reward (identical free curves); its constrained arm shows what DAPO does
with rewards that actually rank orders (``naive-constrained`` is the hackable counterpart).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from gr2.config import run_rl_config
from gr2.rl.config import REWARD_NAMES

#: Logged per training step (``gr2.rl.stage``): (log key, panel title).
TRAIN_KEYS = (("rl/copy_prerank_rate", "identity-copy rate (— pre-rank, -- shown order)"),
              ("reward", "mean reward"), ("rl/valid_rate", "valid-output rate"))
VAL_KEY = "val/N@5"
#: Suffix of an arm whose rollouts go through the ranking constraint.
CONSTRAINED = "-constrained"
DEFAULT_ARMS = ("naive", "conditional", "conditional" + CONSTRAINED)


def arm_settings(arm: str) -> tuple[str, bool]:
    """``(reward, constrained)`` of an arm name (``conditional`` or ``conditional-constrained``)."""
    constrained = arm.endswith(CONSTRAINED)
    reward = arm[:-len(CONSTRAINED)] if constrained else arm
    if reward not in REWARD_NAMES:
        raise SystemExit(f"arm {arm!r}: {reward!r} is not a reward {REWARD_NAMES} (add {CONSTRAINED!r} to constrain)")
    return reward, constrained


def arm_label(arm: str) -> str:
    """How an arm is named in the figure: ``conditional, constrained``."""
    reward, constrained = arm_settings(arm)
    return f"{reward}, constrained" if constrained else reward


# --------------------------------------------------------------------------- configuration and data


def val_lists(run_dir: Path, n: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``n`` validation lists that have a positive (others score 0 whatever the order)."""
    from gr2.runs import RunDir

    lists = pd.read_parquet(RunDir(run_dir).file("candidates", "val.parquet"))
    lists = lists[lists["labels"].map(lambda ls: any(x > 0 for x in ls))]
    return lists.sample(n=min(n, len(lists)), random_state=seed).reset_index(drop=True)


# --------------------------------------------------------------------------- validation during training
def val_callback(lists: pd.DataFrame, items: Any, prompt_cfg: Any, tokenizer: Any, max_new_tokens: int,
                 every: int, path: Path, mode: str = "reasoning") -> Any:
    """A callback that re-ranks ``lists`` before training and every ``every`` steps — greedily
    (``mode="reasoning"``) or by direct scoring (``"direct"``, gr2.llm.rerank: no generation) — and
    appends ``{"step", "val/N@5", "val/valid_rate", "val/identity_rate_prerank"}`` to ``path``."""
    from transformers import TrainerCallback

    from gr2.eval.llm_rows import evaluate_rerank
    from gr2.llm.generate import GenerationParams
    from gr2.llm.rerank import rerank_lists, rerank_lists_direct

    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)

    def evaluate(model: Any, step: int) -> None:
        model.eval()
        outputs = (rerank_lists_direct(model, tokenizer, lists, items, prompt_cfg) if mode == "direct"
                   else rerank_lists(model, tokenizer, lists, items, prompt_cfg, params))
        res = evaluate_rerank(outputs, lists)
        model.train()
        line = {"step": step, VAL_KEY: res["metrics"]["N@5"], "val/valid_rate": res["valid_rate"],
                "val/identity_rate_prerank": res["identity_rate_prerank"]}
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    class Validate(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001 - transformers' API
            if state.global_step == 0:
                evaluate(model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001 - transformers' API
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                evaluate(model, state.global_step)

    return Validate()


def train_with_callback(model: Any, tok: Any, rows: list[dict[str, Any]], cfg: Any, out: Path,
                        callback: Any | None) -> None:
    """``train_rl`` as the ``rl`` stage runs it; ``callback`` is added to the trainer it builds
    (``DAPOTrainer.__init__`` wrapped for the call only: ``train_rl`` takes no callbacks)."""
    from gr2.rl.stage import train_rl
    from gr2.training.dapo import DAPOTrainer

    if callback is None:
        train_rl(model, tok, rows, cfg, out)
        return
    init = DAPOTrainer.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.add_callback(callback)

    DAPOTrainer.__init__ = __init__
    try:
        train_rl(model, tok, rows, cfg, out)
    finally:
        DAPOTrainer.__init__ = init


def train_rewards(args: argparse.Namespace) -> None:
    """Train once per arm into ``<out>/<arm>/`` (skipping arms whose model is written)."""
    from gr2.llm.registry import load
    from gr2.prompts.items import load_item_texts
    from gr2.rl.stage import prompt_rows, select_lists
    from gr2.runs import RunDir, model_source

    run = RunDir(args.run_dir)
    source = model_source(run, args.model)
    items = load_item_texts(run)
    for arm in args.rewards:
        reward, constrained = arm_settings(arm)
        out = args.out / arm
        if (out / "model" / "config.json").exists():
            print(f"{arm}: {out}/model exists, not retrained", flush=True)
            continue
        cfg = run_rl_config(args.run_dir, args.overrides, reward=reward, constrained=constrained, steps=args.steps,
                        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                        reasoning=args.reasoning, batch_size=args.batch_size, num_threads=args.threads)
        lists = pd.concat([pd.read_parquet(run.file("candidates", f"{s}.parquet")) for s in cfg.split],
                          ignore_index=True)
        model, tok = load(source)
        rows = prompt_rows(select_lists(lists, cfg), items, tok, cfg.prompt_config)
        callback = None
        if args.val_lists:
            callback = val_callback(val_lists(args.run_dir, args.val_lists, cfg.seed), items, cfg.prompt_config,
                                    tok, cfg.max_completion_length, args.val_every, out / "val.jsonl",
                                    args.val_mode or ("reasoning" if cfg.reasoning else "direct"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"policy": source, "lists": len(rows),
                                                     "rl": dataclasses.asdict(cfg)}, indent=1), encoding="utf-8")
        print(f"{arm}: training {cfg.steps} steps on {len(rows)} lists from {source}", flush=True)
        train_with_callback(model, tok, rows, cfg, out, callback)
        if not cfg.keep_checkpoints:  # as the rl stage: rl/model is written, checkpoints only cost disk
            shutil.rmtree(out / "checkpoints", ignore_errors=True)


# --------------------------------------------------------------------------- curves
def read_jsonl(path: Path) -> dict[int, dict[str, Any]]:
    """Lines of a jsonl log keyed by step; a step logged twice (a resumed run) keeps its last line."""
    if not path.exists():
        return {}
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {int(x["step"]): x for x in lines}


def curves(out: Path, arms: list[str]) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """``curves[arm]["train" | "val"][step]`` from ``<out>/<arm>/{log,val}.jsonl``."""
    return {a: {"train": read_jsonl(out / a / "log.jsonl"), "val": read_jsonl(out / a / "val.jsonl")}
            for a in arms}


def _series(log: dict[int, dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps = [s for s in sorted(log) if log[s].get(key) is not None]
    return steps, [float(log[s][key]) for s in steps]


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_val = any(d["val"] for d in data.values())
    panels = [*TRAIN_KEYS, (VAL_KEY, "validation N@5 (--val-mode)")] if with_val else list(TRAIN_KEYS)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, (arm, d) in enumerate(data.items()):
            color = f"C{i}"
            log = d["val"] if key == VAL_KEY else d["train"]
            ax.plot(*_series(log, key), color=color, marker=".", label=arm_label(arm))
            if key == "rl/copy_prerank_rate":
                ax.plot(*_series(log, "rl/copy_shown_rate"), color=color, linestyle="--")
        if key != "reward":  # rates and N@5 live in [0, 1]: a fixed axis keeps small changes honest
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x: Any) -> str:
    return "" if x is None else f"{float(x):.3f}"


def markdown(data: dict[str, Any]) -> str:
    """One row per step; per arm: pre-rank copy, shown copy, reward, valid rate (+ val N@5)."""
    cols = [("rl/copy_prerank_rate", "copy pre-rank"), ("rl/copy_shown_rate", "copy shown"),
            ("reward", "reward"), ("rl/valid_rate", "valid")]
    with_val = any(d["val"] for d in data.values())
    head = [f"{r} {name}" for r in data for name in [c[1] for c in cols] + (["val N@5"] if with_val else [])]
    lines = ["| step | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    steps = sorted({s for d in data.values() for s in (*d["train"], *d["val"])})
    for s in steps:
        cells = []
        for d in data.values():
            cells += [_fmt(d["train"].get(s, {}).get(k)) for k, _ in cols]
            if with_val:
                cells.append(_fmt(d["val"].get(s, {}).get(VAL_KEY)))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, help="run with candidates/, data/, sid/ (not needed with --plot-only)")
    ap.add_argument("--out", type=Path, required=True, help="one sub-folder per arm, the PNG and the table")
    ap.add_argument("--rewards", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                    help=f"arms: a reward {REWARD_NAMES} sampled freely, or REWARD{CONSTRAINED} sampled through "
                         "the ranking constraint")
    ap.add_argument("--plot-only", action="store_true", help="only re-draw from the existing logs")
    ap.add_argument("--model", default="sft", help="starting policy: sft | midtrain | registry name | folder")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--num-generations", type=int, help="G (default: the run's rl config)")
    ap.add_argument("--max-completion-length", type=int, help="L_max (default: the run's rl config)")
    ap.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=None,
                    help="reasoning prompts (default: the run's rl config)")
    ap.add_argument("--batch-size", type=int, help="prompts per step (default: the run's rl config)")
    ap.add_argument("--val-lists", type=int, default=0, help="validation lists for N@5 (0: none)")
    ap.add_argument("--val-every", type=int, default=10, help="steps between validations")
    ap.add_argument("--val-mode", choices=["reasoning", "direct"],
                    help="validation by greedy generation or direct scoring (default: direct for a "
                         "reasoning-free policy, else reasoning)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="rl.FIELD=VALUE",
                    help="override the run's config (repeatable)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    for arm in args.rewards:
        arm_settings(arm)  # refuse a misspelt arm before hours of training
    if not args.plot_only:
        if args.run_dir is None:
            raise SystemExit("--run-dir is needed unless --plot-only")
        train_rewards(args)
    data = curves(args.out, args.rewards)
    missing = [r for r, d in data.items() if not d["train"]]
    if missing:
        raise SystemExit(f"no log.jsonl under {args.out} for {missing}")
    plot(data, args.out / "reward_hacking.png")
    table = markdown(data)
    (args.out / "reward_hacking.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"\nfigure: {args.out / 'reward_hacking.png'}")
    return data


if __name__ == "__main__":
    main()
