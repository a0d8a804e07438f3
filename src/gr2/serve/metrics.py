"""Counters and histograms rendered in the Prometheus text format (version 0.0.4).

A few dozen lines instead of a ``prometheus_client`` dependency: the service exposes a handful of
series, all owned by one process.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = ["CONTENT_TYPE", "Counter", "Histogram", "gauge_lines"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Counter:
    """A monotone counter per label combination."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._values: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[tuple(map(str, label_values))] += by

    def value(self, *label_values: str) -> float:
        return self._values.get(tuple(map(str, label_values)), 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, v in sorted(self._values.items()):
                out.append(f"{self.name}{_labels(self.labels, key)} {_num(v)}")
        return out


class Histogram:
    """Cumulative-bucket histogram per label combination."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        key = tuple(map(str, label_values))
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
            self._sums[key] += value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, counts in sorted(self._counts.items()):
                for b, c in zip(self.buckets, counts):
                    le = 'le="' + _num(b) + '"'
                    out.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {c}")
                out.append(f"{self.name}_sum{_labels(self.labels, key)} {_num(self._sums[key])}")
                out.append(f"{self.name}_count{_labels(self.labels, key)} {counts[-1]}")
        return out


def gauge_lines(name: str, help: str, values: dict[tuple[str, ...], float] | float,
                labels: Sequence[str] = (), kind: str = "gauge") -> list[str]:
    """Lines of a series read from elsewhere at scrape time (``kind``: gauge or counter)."""
    out = [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
    items = values.items() if isinstance(values, dict) else [((), values)]
    out.extend(f"{name}{_labels(labels, key)} {_num(v)}" for key, v in sorted(items))
    return out
