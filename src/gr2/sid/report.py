"""SID quality metrics (pure numpy): uniqueness, collisions, buckets, code usage and perplexity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def uniqueness_stats(sids: Sequence[Sequence[int]] | np.ndarray) -> dict[str, float | int]:
    """How unique a set of SIDs is.

    - ``uniqueness``: share of items whose full tuple no other item has (docs/method.md §3)
    - ``distinct_ratio``: distinct tuples / items (the "12,088 of 12,101" convention)
    - ``collisions``: items minus distinct tuples (the items that must move to become unique)
    - ``largest_bucket``: most items sharing one full tuple
    - ``largest_prefix_bucket``: most items sharing the first L−1 codes (the bucket that decides
      whether a level must be added: more than C items cannot be separated by the last code)
    """
    tuples = [tuple(int(c) for c in s) for s in (sids.tolist() if isinstance(sids, np.ndarray) else sids)]
    n = len(tuples)
    if n == 0:
        return {"items": 0, "distinct": 0, "uniqueness": 1.0, "distinct_ratio": 1.0,
                "collisions": 0, "largest_bucket": 0, "largest_prefix_bucket": 0}
    counts = Counter(tuples)
    singles = sum(1 for c in counts.values() if c == 1)
    prefix_counts = Counter(t[:-1] for t in tuples)
    return {
        "items": n,
        "distinct": len(counts),
        "uniqueness": singles / n,
        "distinct_ratio": len(counts) / n,
        "collisions": n - len(counts),
        "largest_bucket": max(counts.values()),
        "largest_prefix_bucket": max(prefix_counts.values()),
    }


def level_stats(codes: np.ndarray, codebook_size: int) -> list[dict[str, float | int]]:
    """Per level: codes used and codebook perplexity ``exp(entropy of code usage)``.

    Perplexity is C for perfectly uniform usage and 1 for a collapsed codebook.
    """
    codes = np.asarray(codes, dtype=np.int64)
    out = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        out.append({
            "level": level,
            "codes_used": int((counts > 0).sum()),
            "perplexity": float(np.exp(-(p * np.log(p)).sum())),
            "max_share": float(p.max()),
        })
    return out


def extra_level_count(sids: Sequence[Sequence[int]], levels: int) -> dict[int, int]:
    """How many SIDs have each length above ``levels`` (the items that received extra levels)."""
    lengths = Counter(len(s) for s in sids)
    return {length: n for length, n in sorted(lengths.items()) if length > levels}
