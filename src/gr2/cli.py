"""``gr2`` command line: one sub-command per stage, each a thin layer over the Python API.

Every stage command takes ``--run-dir`` and works on the artifacts of the stages before it;
``gr2 run`` runs them all in order and resumes where an earlier run stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gr2.checks import ConfigError
from gr2.config import load_config, profile_path
from gr2.llm.models_cli import add_models_parser
from gr2.report.cli import add_report_parser
from gr2.serve.cli import add_serve_parser
from gr2.slates.cli import add_slates_parser
from gr2.stages import TASKS
from gr2.variants import VARIANTS, run_variants

DESCRIPTIONS = {
    "data": "Load a dataset, k-core filter it and write data/ (items, interactions, stats).",
    "sid": "Train the semantic-ID tokenizer and write sid/ (SID table, report).",
    "candidates": "Fit the pre-ranker and write K-candidate lists for train/val/test.",
    "midtrain": "Mid-train the student LLM on SID tokens (persona, next-SID, captioning, general LM); "
                "write midtrain/model and midtrain/metrics.json.",
    "traces": "Sample reasoning traces from a teacher (rejection or targeted sampling) on the training lists; "
              "write traces/samples.jsonl, accepted.jsonl and stats.json (resumable).",
    "sft": "Fine-tune the student on the accepted traces with the weighted loss (λ_r reasoning, λ_o ranking); "
           "write sft/model and sft/metrics.json.",
    "rl": "Train the re-ranker with DAPO and verifiable re-ranking rewards; write rl/model, rl/log.jsonl "
          "and rl/metrics.json.",
    "eval": "Score the pre-rank order and baselines on the candidate lists; write eval/results.md. "
            "`gr2 eval rerank --model M` adds an LLM's row; `gr2 eval retrieval` measures a model as a "
            "full-catalogue retriever.",
    "rating": "The rating-prediction task (--task rating, docs/rating.md): baselines, the student zero-shot "
              "and after pure RL, RMSE/MAE; write rating/results.md and rating/model.",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (any stage's fields)")
    p.add_argument("--profile", help="bundled profile: quick (~16 min on 2 CPU cores), medium (45-65 min), gpu (one GPU, the LLM stages at real budgets), full or tiny (ignored with --config)")
    p.add_argument("--dataset", help="beauty, ml-1m, ml-100k or a folder in the generic format")
    p.add_argument("--task", choices=list(TASKS),
                   help="rerank (default): data → sid → … → eval; rating: data → rating, rating prediction on "
                        "explicit ratings (docs/rating.md)")
    p.add_argument("--slates", type=Path,
                   help="logged slates with graded labels (.parquet/.jsonl/.csv, docs/slates.md) instead of a "
                        "dataset and a pre-ranker; needs --items; sets rl.reward=ndcg unless --reward is given")
    p.add_argument("--items", type=Path, help="with --slates: the items file (.csv/.parquet, generic format)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. --set candidates.k=20 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gr2",
        description="GR2: generative reasoning re-ranker — data, semantic IDs, candidates, training, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run every stage in order (resumable)",
                         description="Run data → sid → candidates → midtrain → traces → sft → rl → eval in a run "
                                     "directory (with --task rating: data → rating), "
                                     "skipping stages that are already complete for the same config.")
    run.add_argument("--out", "--run-dir", dest="run_dir", type=Path, required=True, help="run directory")
    run.add_argument("--stages", nargs="+", metavar="STAGE", help="only these stages (default: all)")
    run.add_argument("--force", nargs="+", default=[], metavar="STAGE", help="redo these stages (and what reads them)")
    run.add_argument("--reuse", type=Path, metavar="BASE_RUN",
                     help="link the stages a finished run made with the same config instead of recomputing them "
                          "(default config: BASE_RUN's own, plus --set)")
    _add_config_args(run)

    variants = sub.add_parser(
        "variants", help="train the paper's variants of a finished run and add their rows to its results table",
        description="Train each variant into RUN/variants/NAME, reusing every stage it shares with RUN, then "
                    "redo RUN's eval with the variants' SFT/RL rows. Variants: "
                    + "; ".join(f"{name}: {v.description} ({', '.join(v.overrides)})" for name, v in VARIANTS.items()))
    variants.add_argument("--run-dir", type=Path, required=True, help="the finished base run")
    variants.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                          help=f"only these variants (default: all of {', '.join(VARIANTS)})")
    variants.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    variants.set_defaults(handler=_variants)

    for name, text in DESCRIPTIONS.items():
        p = sub.add_parser(name, help=text.split(";")[0], description=text)
        p.add_argument("--run-dir", type=Path, required=True, help="run directory")
        p.add_argument("--force", action="store_true", help="redo the stage even if complete")
        _add_config_args(p)
        if name == "candidates":
            p.add_argument("--prerank", choices=["sasrec", "popularity", "cooc", "llm"],
                           help="pre-ranker (llm: beam search with the run's mid-trained model)")
        if name == "traces":
            p.add_argument("--teacher", choices=["local", "openai", "evidence"],
                           help="teacher backend (model: --set traces.model=NAME)")
            p.add_argument("--mode", choices=["rejection", "targeted"], help="sampling mode")
        if name == "rl":
            p.add_argument("--reward", choices=["conditional", "naive", "auc", "ndcg"], help="reward function")
        if name == "eval":
            p.add_argument("action", nargs="?", choices=["table", "rerank", "retrieval"], default="table",
                           help="table: re-ranking results table (default); rerank: add an LLM re-ranker's "
                                "row; retrieval: full-catalogue R@5/10, N@5/10 of an LLM's beam search")
            p.add_argument("--model", default=None,
                           help="rerank/retrieval: midtrain/sft/rl (the run's model), a registry name or a "
                                "folder (default: rl for rerank, midtrain for retrieval)")
            p.add_argument("--name", help="rerank: row name (default: the model's name)")
            p.add_argument("--split", choices=["val", "test"], default="test", help="rerank/retrieval: split")
            p.add_argument("--sample", type=int, default=None,
                           help="rerank: lists (default eval.llm_lists); retrieval: users (default 500); 0 = all")
            p.add_argument("--num-beams", type=int, default=10, help="retrieval: beam width")
            p.add_argument("--mode", dest="rerank_mode", choices=["reasoning", "direct"], default="reasoning",
                           help="rerank: generate the answer (reasoning) or score candidates without "
                                "generating (direct, the reasoning-free serving mode)")
        if name == "sid":
            p.add_argument("action", nargs="?", choices=["train", "ablate"], default="train",
                           help="train the tokenizer (default) or run the technique ablation")
    add_models_parser(sub)
    add_serve_parser(sub)
    add_report_parser(sub)
    add_slates_parser(sub)
    return parser


def _config(args: argparse.Namespace):
    base: dict = {}
    if args.dataset:
        base.setdefault("data", {})["dataset"] = args.dataset
    if args.task:
        base["task"] = args.task
    if bool(args.slates) != bool(args.items):
        raise ConfigError("--slates and --items go together (docs/slates.md)")
    if args.slates:
        base["slates"] = {"path": str(args.slates.resolve()), "items": str(args.items.resolve())}
        base.setdefault("rl", {})["reward"] = "ndcg"  # slates have several positives; --reward below wins
    for flag, section, key in (("prerank", "candidates", "prerank"), ("teacher", "traces", "teacher"),
                               ("mode", "traces", "mode"), ("reward", "rl", "reward")):
        if getattr(args, flag, None):
            base.setdefault(section, {})[key] = getattr(args, flag)
    path = args.config
    run_dir = args.run_dir
    reuse = getattr(args, "reuse", None)
    if path is None and args.profile is None and (run_dir / "config.yaml").exists():
        path = run_dir / "config.yaml"  # a stage command reuses the run's own config
    elif path is None and args.profile is None and reuse is not None and (reuse / "config.yaml").exists():
        path = reuse / "config.yaml"  # a sweep: the base run's config plus --set
    elif path is None:
        path = profile_path(args.profile or "quick")
    return load_config(path, args.overrides, base=base)


def _rerank(args: argparse.Namespace, cfg) -> None:
    """``gr2 eval rerank``: one LLM's row, greedy, in the prompt format the run trained with."""
    from gr2.eval.rerank import run_rerank_eval
    from gr2.llm.generate import GenerationParams
    from gr2.prompts.items import trained_prompt
    from gr2.runs import RunDir

    run = RunDir(args.run_dir)
    e = cfg.eval
    lists = e.llm_lists if args.sample is None else args.sample or None
    model = args.model or "rl"
    summary = run_rerank_eval(run, model, args.name, args.split, lists, trained_prompt(run.path, model),
                              GenerationParams(max_new_tokens=e.llm_max_new_tokens, temperature=0.0),
                              e.llm_batch_size, seed=e.seed, eval_cfg=e, mode=args.rerank_mode)
    m = summary["metrics"]
    print(f"{summary['n_lists']} lists: valid {summary['valid_rate']}, R@1 {m.get('R@1')}, N@5 {m.get('N@5')} "
          f"(pre-rank order on the same lists: R@1 {summary['prerank_metrics'].get('R@1')}, "
          f"N@5 {summary['prerank_metrics'].get('N@5')}); table in {run.path}/eval/results.md")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )


def _variants(args: argparse.Namespace) -> int:
    """``gr2 variants``: :func:`gr2.variants.run_variants`, then one line per variant."""
    from gr2.data.loaders import DataFormatError

    _setup_logging(args.verbose)
    try:
        done = run_variants(args.run_dir, args.only)
    except (ConfigError, DataFormatError, FileNotFoundError, RuntimeError) as exc:
        print(f"gr2: error: {exc}", file=sys.stderr)
        return 2
    for name, run in done.items():
        if run is None:
            print(f"{name}: skipped, {VARIANTS[name].base_is_it}")
        else:
            stages = run.manifest().get("stages", {})
            trained = [s for s, info in stages.items() if "reused_from" not in info]
            print(f"{name}: {run.path} (trained: {', '.join(trained) or 'nothing'}; "
                  f"reused from the base: {', '.join(s for s in stages if s not in trained) or 'nothing'})")
    print(f"results table with the variants' rows: {args.run_dir}/eval/results.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "handler", None):  # commands that are not pipeline stages (gr2 models ...)
        return args.handler(args)
    _setup_logging(args.verbose)
    from gr2.data.loaders import DataFormatError
    from gr2.pipeline import run_pipeline

    try:
        cfg = _config(args)
        if args.command == "run":
            run_pipeline(args.run_dir, cfg, stages=args.stages, force=args.force, reuse=args.reuse)
        elif args.command == "sid" and args.action == "ablate":
            from gr2.runs import RunDir
            from gr2.sid.ablation import run_ablation

            run_ablation(RunDir(args.run_dir), cfg.sid)
        elif args.command == "eval" and args.action == "retrieval":
            from gr2.eval.retrieval import run_retrieval_eval
            from gr2.runs import RunDir

            sample = 500 if args.sample is None else args.sample or None
            run_retrieval_eval(RunDir(args.run_dir), args.model or "midtrain", args.split, sample, args.num_beams)
        elif args.command == "eval" and args.action == "rerank":
            _rerank(args, cfg)
        else:
            run_pipeline(args.run_dir, cfg, stages=[args.command], force=[args.command] if args.force else [])
    except (ConfigError, DataFormatError, FileNotFoundError, RuntimeError) as exc:
        print(f"gr2: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
