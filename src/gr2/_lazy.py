"""Lazy package exports: a package names what it offers and from which submodule, and each name is
imported on first use. Packages stay cheap to import (``gr2 --help`` and ``gr2.config`` never load
torch), while ``from gr2.serve import Reranker`` still works."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``. ``exports`` maps a name to its module, absolute
    (``gr2.config``) or relative to the package (``registry``). A loaded name is cached on the package."""

    def module_of(name: str) -> str:
        module = exports[name]
        return module if module.startswith("gr2.") else f"{package}.{module}"

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of(name)), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
