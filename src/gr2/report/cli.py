"""``gr2 report --run-dir RUN``: write ``RUN/report.md`` and its plots (``RUN/report/*.png``).

Light on purpose: building the parser imports neither matplotlib nor pandas, so registering it in
the ``gr2`` CLI costs the other commands nothing. ``python -m gr2.report.cli --run-dir RUN`` is the
same command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_report_parser", "main", "report_command"]


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to a CLI's sub-parsers; dispatch with ``args.handler(args)``."""
    p = subparsers.add_parser("report", help="write the run's report.md (all stages' numbers, plots, config)",
                              description="Write RUN/report.md: dataset statistics, SID report, pre-ranker "
                                          "quality, mid-training, teacher gate and traces, SFT, RL, the results "
                                          "table, stage timings, the exact config and git commit; plots in "
                                          "RUN/report/. Stages that were not run are marked as such.")
    _add_args(p)
    p.set_defaults(handler=report_command)
    return p


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, required=True, help="run directory")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def report_command(args: argparse.Namespace) -> int:
    """Run a parsed ``gr2 report`` command; prints the report's path."""
    from gr2.report.build import build_report

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        path = build_report(args.run_dir)
    except FileNotFoundError as exc:
        print(f"gr2 report: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gr2.report.cli --run-dir RUN`` (same as ``gr2 report``)."""
    parser = argparse.ArgumentParser(prog="gr2 report", description="Write a run's report.md and plots.")
    _add_args(parser)
    return report_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
