"""Range checks of config fields, run when a config object is built (its ``__post_init__``), so that
a bad value stops every command before any work, with one line naming the section, the field, the
value and what is allowed. :func:`gr2.config.load_config` turns the ``ValueError`` into a
:class:`ConfigError` (exit code 2 on the command line), which a stage also raises for a setting that
does not fit its run's data. No imports beyond the standard library: every config module uses it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ConfigError", "at_least", "check", "each_at_least", "in_unit_interval", "positive"]


class ConfigError(ValueError):
    """A configuration file or override that does not match the schema."""


def check(section: str, checks: Mapping[str, bool]) -> None:
    """Raise ``ValueError("section: message; message")`` for every message whose check is false."""
    bad = [msg for msg, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{section}: " + "; ".join(bad))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def at_least(value: Any, low: float, none_ok: bool = False) -> bool:
    """``value >= low`` (a number, not NaN), or ``None`` when ``none_ok``."""
    return (none_ok and value is None) or (_number(value) and value >= low)


def positive(value: Any) -> bool:
    """A finite number above 0."""
    return _number(value) and 0 < value < math.inf


def in_unit_interval(value: Any) -> bool:
    """A number in [0, 1]."""
    return _number(value) and 0 <= value <= 1


def each_at_least(values: Iterable[Any], low: float) -> bool:
    """Every value ``>= low``, and at least one value."""
    values = list(values)
    return bool(values) and all(at_least(v, low) for v in values)
