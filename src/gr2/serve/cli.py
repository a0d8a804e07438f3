"""``gr2 serve``: the command line of the HTTP service.

Light on purpose: building the parser imports neither torch nor FastAPI, so adding it to the
``gr2`` CLI costs nothing for the other commands (and works without the ``serve`` extra until the
command is run). ``python -m gr2.serve.cli --run-dir RUN`` is the same command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gr2.serve.config import ServeConfig

__all__ = ["add_serve_parser", "main", "serve_command"]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to a CLI's sub-parsers; dispatch with ``args.handler(args)``."""
    p = subparsers.add_parser("serve", help="serve a trained re-ranker over HTTP",
                              description="Serve the run's latest model (rl → sft → midtrain) over HTTP: "
                                          "POST /v1/rerank, GET /healthz, GET /metrics, docs at /docs.")
    _add_args(p)
    p.set_defaults(handler=serve_command)
    return p


def _add_args(p: argparse.ArgumentParser) -> None:
    d = ServeConfig()
    p.add_argument("--run-dir", type=Path, required=True, help="run directory")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--stage", choices=["rl", "sft", "midtrain"], help="model to serve (default: the latest present)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-inflight", type=int, default=d.max_inflight,
                   help="requests queued or running at most (503 beyond)")
    p.add_argument("--max-batch", type=int, default=d.max_batch_direct, help="direct-mode requests per model batch")
    p.add_argument("--max-batch-reasoning", type=int, default=d.max_batch_reasoning,
                   help="reasoning-mode requests per generation batch")
    p.add_argument("--max-candidates", type=int, default=d.max_candidates, help="largest K accepted")
    p.add_argument("--timeout", type=float, default=d.default_timeout_s, help="default request deadline, seconds")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="reasoning mode: answer length cap")
    p.add_argument("--no-prefix-cache", action="store_true", help="recompute the shared prompt prefix every time")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def serve_command(args: argparse.Namespace) -> int:
    """Run a parsed ``gr2 serve`` command (blocks until interrupted)."""
    from gr2.serve.http import serve

    try:
        config = ServeConfig(max_inflight=args.max_inflight, max_batch_direct=args.max_batch,
                             max_batch_reasoning=args.max_batch_reasoning, max_candidates=args.max_candidates,
                             default_timeout_s=args.timeout,
                             max_timeout_s=max(args.timeout, ServeConfig.max_timeout_s),
                             max_new_tokens=args.max_new_tokens, prefix_cache=not args.no_prefix_cache)
        serve(args.run_dir, args.host, args.port, stage=args.stage, config=config, threads=args.threads,
              log_level=args.log_level)
    except (FileNotFoundError, ValueError) as exc:
        print(f"gr2 serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gr2.serve.cli --run-dir RUN`` (same as ``gr2 serve``)."""
    parser = argparse.ArgumentParser(prog="gr2 serve", description="Serve a trained re-ranker over HTTP.")
    _add_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve_command(args)


if __name__ == "__main__":
    sys.exit(main())
