"""Unique SIDs: the random last level(s) and deterministic collision resolution (pure numpy).

Vocabulary. An item's *proposal* is the L-code tuple the tokenizer gives it. Its *bucket* is the
prefix of its first L−1 codes. Two items *collide* when their tuples are equal.

:func:`draw_random_levels` is the paper's "random last level": the last M codes are not learned,
each item draws them at random among the codes not yet used by items with the same prefix (once
a bucket has used every code, codes are reused in a balanced random order).

:func:`resolve_collisions` makes every tuple unique (docs/method.md §3, our decision [D]):

1. Inside a bucket, each contested code is kept by the item nearest to it (lowest ``cost``; ties
   by position), or by an item that already owns it (``existing``: cold start).
2. Every other contender moves to a free code of the same bucket, the free code nearest to it
   (``cost``), or the smallest free code when no cost is given. Losers are served in order of
   their cost for the code they wanted, then by position.
3. Only when the bucket has no free code left is a level added: the items that still share a
   code c get one more code under the prefix (bucket, c), assigned in order (recursively, should
   C items not suffice). When the owner of c is itself new, it is extended too, so that within
   one run no SID is a prefix of another.

``existing`` SIDs (cold start) are never changed: new items only take codes they leave free.
A new item may then extend an existing L-code SID (``(P, c)`` → ``(P, c, k)``), the one case where
an SID is a prefix of another; SIDs are always shown between ``<|sid_begin|>``/``<|sid_end|>``,
so parsing stays unambiguous.

Everything is deterministic: same inputs (and seed) → same output, whatever the item order in
``existing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

CostFn = Callable[[np.ndarray], np.ndarray]
"""``cost_fn(indices) -> (len(indices), C)`` array; lower = the item prefers that last-level code."""


@dataclass
class ResolveInfo:
    """What :func:`resolve_collisions` did."""

    kept: int = 0
    """Items whose proposal was already unique or who won their code."""
    reassigned: int = 0
    """Items moved to another free code of their bucket."""
    extended: int = 0
    """Items that received one or more extra levels (bucket full)."""
    max_length: int = 0
    """Longest SID after resolution."""
    full_buckets: int = 0
    """Buckets that had no free code left for their colliding items."""

    def as_dict(self) -> dict[str, int]:
        return {"kept": self.kept, "reassigned": self.reassigned, "extended": self.extended,
                "max_length": self.max_length, "full_buckets": self.full_buckets}


@dataclass
class Occupancy:
    """Codes taken by existing SIDs under each prefix (prefixes of length ≥ ``min_depth``)."""

    min_depth: int
    used: dict[tuple[int, ...], set[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, existing: Iterable[Sequence[int]] | None, min_depth: int) -> Occupancy:
        occ = cls(min_depth)
        for sid in existing or ():
            sid = tuple(int(c) for c in sid)
            for depth in range(min_depth, len(sid)):
                occ.used.setdefault(sid[:depth], set()).add(sid[depth])
        return occ

    def get(self, prefix: tuple[int, ...]) -> set[int]:
        return self.used.get(prefix, set())


def row_keys(rows: np.ndarray, codebook_size: int) -> np.ndarray:
    """One int64 per row, equal iff the rows are equal (mixed radix when it fits, else ranks)."""
    rows = np.asarray(rows, dtype=np.int64)
    n, width = rows.shape
    if width == 0:
        return np.zeros(n, dtype=np.int64)
    if width * np.log2(max(codebook_size, 2)) < 62:
        key = np.zeros(n, dtype=np.int64)
        for j in range(width):
            key = key * codebook_size + rows[:, j]
        return key
    _, inv = np.unique(rows, axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable sort order, group start offsets and group sizes of ``keys``."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    if len(sk) == 0:
        return order, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    sizes = np.diff(np.r_[starts, len(sk)])
    return order, starts, sizes


def draw_random_levels(
    prefix: np.ndarray,
    levels: int,
    codebook_size: int,
    seed: int | Sequence[int],
    existing: Iterable[Sequence[int]] | None = None,
    occupancy: Occupancy | None = None,
) -> np.ndarray:
    """The paper's random last level(s): ``levels`` codes per item drawn after ``prefix``.

    For each drawn level, the items of one bucket (same codes so far) receive distinct codes at
    random among those no existing SID uses under that bucket; once they run out, codes are
    reused in a balanced random order. Returns ``(N, levels)`` int64.
    """
    prefix = np.asarray(prefix, dtype=np.int64)
    n, depth0 = prefix.shape
    C = int(codebook_size)
    rng = np.random.default_rng(seed)
    occ = occupancy or Occupancy.build(existing, depth0)
    out = np.empty((n, levels), dtype=np.int64)
    current = prefix
    for lev in range(levels):
        keys = row_keys(current, C)
        order, starts, sizes = _groups(keys)
        group_of = np.empty(n, dtype=np.int64)
        group_of[order] = np.repeat(np.arange(len(starts)), sizes)
        occupied = _occupied(current[order[starts]], occ, C)
        codes = np.empty(n, dtype=np.int64)
        # Small buckets with no existing SID (nearly all): vectorised draws without repetition.
        easy_group = (sizes <= max(C // 4, 1)) & ~occupied
        easy = easy_group[group_of]
        codes[easy] = _distinct_draws(group_of[easy], C, rng)
        for g in np.flatnonzero(~easy_group):  # large or partly occupied buckets, one by one
            items = order[starts[g]:starts[g] + sizes[g]]
            taken = occ.get(tuple(current[items[0]].tolist()))
            free = np.setdiff1d(np.arange(C), np.fromiter(taken, dtype=np.int64, count=len(taken)))
            seq = rng.permutation(free)
            if len(items) > len(seq):  # bucket full: balanced reuse of all codes
                reps = -(-(len(items) - len(seq)) // C)
                seq = np.concatenate([seq] + [rng.permutation(C) for _ in range(reps)])
            codes[rng.permutation(items)] = seq[:len(items)]
        out[:, lev] = codes
        current = np.concatenate([current, codes[:, None]], axis=1)
    return out


def _occupied(prefixes: np.ndarray, occ: Occupancy, C: int) -> np.ndarray:
    """Which of these prefixes (rows) have codes taken by existing SIDs."""
    depth = prefixes.shape[1]
    known = [p for p in occ.used if len(p) == depth]
    if not known:
        return np.zeros(len(prefixes), dtype=bool)
    both = row_keys(np.vstack([prefixes, np.array(known, dtype=np.int64).reshape(len(known), depth)]), C)
    return np.isin(both[:len(prefixes)], both[len(prefixes):])


def _distinct_draws(group: np.ndarray, C: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform random code per item, distinct within each group (groups of at most C/4 items).

    Rejection rounds: an item whose code is already held in its group draws again; items that
    hold a code keep it, so each redraw is uniform among the codes still free.
    """
    m = len(group)
    codes = rng.integers(0, C, size=m)
    if m == 0:
        return codes
    settled = np.zeros(m, dtype=bool)
    priority = rng.permutation(m)
    while True:
        key = group * C + codes
        order = np.lexsort((priority, ~settled, key))
        sk = key[order]
        first = np.r_[True, sk[1:] != sk[:-1]]
        settled[order[first]] = True
        redo = order[~first]
        if len(redo) == 0:
            return codes
        codes[redo] = rng.integers(0, C, size=len(redo))


def resolve_collisions(
    codes: np.ndarray,
    codebook_size: int,
    cost_fn: CostFn | None = None,
    existing: Iterable[Sequence[int]] | None = None,
    occupancy: Occupancy | None = None,
) -> tuple[list[tuple[int, ...]], ResolveInfo]:
    """Make the proposals ``codes`` (N, L) unique, also against ``existing`` SIDs (never changed).

    Returns one tuple per item (length L, or more where a level was added) and a summary. See the
    module docstring for the rules.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ValueError(f"codes must be a 2-d array (items × levels), got shape {codes.shape}")
    n, L = codes.shape
    C = int(codebook_size)
    if n and (codes.min() < 0 or codes.max() >= C):
        raise ValueError(f"codes must lie in 0..{C - 1}")
    existing = [tuple(int(c) for c in s) for s in (existing or ())]
    if any(len(s) < L for s in existing):
        raise ValueError(f"existing SIDs must have at least {L} codes")
    occ = occupancy or Occupancy.build(existing, L - 1)
    info = ResolveInfo()
    out: list[tuple[int, ...] | None] = [None] * n
    if n == 0:
        return [], info

    # Fast path: a proposal unique among the new items and not an existing L-prefix stands.
    if existing:  # keys computed jointly so that they are comparable in every case
        both = row_keys(np.vstack([codes, np.array([s[:L] for s in existing], dtype=np.int64)]), C)
        full = both[:n]
        in_existing = np.isin(full, both[n:])
    else:
        full = row_keys(codes, C)
        in_existing = np.zeros(n, dtype=bool)
    _, inv, counts = np.unique(full, return_inverse=True, return_counts=True)
    fast = (counts[inv.reshape(-1)] == 1) & ~in_existing
    rows = codes.tolist()
    for i in np.flatnonzero(fast):
        out[i] = tuple(rows[i])
    if fast.all():
        info.kept, info.max_length = n, L
        return out, info  # type: ignore[return-value]

    # Slow path, bucket by bucket (sorted by prefix key: deterministic).
    bucket = row_keys(codes[:, :L - 1], C)
    order, starts, sizes = _groups(bucket)
    slow_buckets = np.unique(bucket[~fast])
    pos = np.searchsorted(bucket[order][starts], slow_buckets)
    for b in pos:
        members = order[starts[b]:starts[b] + sizes[b]]
        slow = members[~fast[members]]
        prefix = tuple(rows[slow[0]][:L - 1])
        used = set(occ.get(prefix))
        used.update(codes[members[fast[members]], L - 1].tolist())
        cost = cost_fn(slow) if cost_fn is not None else None
        _place(prefix, slow, codes[slow, L - 1], cost, used, occ, C, out, info)
    lengths = np.fromiter((len(s) for s in out), dtype=np.int64, count=n)  # type: ignore[arg-type]
    same = np.array([s[:L] == tuple(r) for s, r in zip(out, rows)])  # type: ignore[index]
    info.extended = int((lengths > L).sum())
    info.kept = int(((lengths == L) & same).sum())
    info.reassigned = n - info.kept - info.extended
    info.max_length = int(lengths.max())
    return out, info  # type: ignore[return-value]


def _place(
    prefix: tuple[int, ...],
    items: np.ndarray,
    proposals: np.ndarray,
    cost: np.ndarray | None,
    used: set[int],
    occ: Occupancy,
    C: int,
    out: list,
    info: ResolveInfo,
) -> None:
    """Give each of ``items`` a unique code after ``prefix``, avoiding ``used`` (recursive)."""
    k = len(items)
    if cost is None and len(set(proposals.tolist())) == k and not used.intersection(proposals.tolist()):
        for i, c in zip(items.tolist(), proposals.tolist()):  # nothing to resolve
            out[i] = prefix + (c,)
        return
    own = cost[np.arange(k), proposals] if cost is not None else np.zeros(k)
    # 1. winners: per proposed code, the lowest cost (then earliest item) unless already used.
    order = np.lexsort((items, own, proposals))
    owner_new: dict[int, int] = {}  # code -> local index of the new item that won it
    losers: list[int] = []
    for j, c in zip(order.tolist(), proposals[order].tolist()):
        if c not in used:
            owner_new[c] = j
            used.add(c)
        else:
            losers.append(j)
    for c, j in owner_new.items():
        out[items[j]] = prefix + (c,)
    # 2. losers take the nearest free code of the bucket, lowest own cost first.
    losers.sort(key=lambda j: (own[j], items[j]))
    free = np.ones(C, dtype=bool)
    free[list(used)] = False
    n_free = int(free.sum())
    take, overflow = losers[:n_free], losers[n_free:]
    if cost is None:  # smallest free codes, in loser order
        for j, c in zip(take, np.flatnonzero(free)[:len(take)].tolist()):
            out[items[j]] = prefix + (c,)
    else:
        for j in take:
            c = int(np.argmin(np.where(free, cost[j], np.inf)))
            free[c] = False
            out[items[j]] = prefix + (c,)
    if not overflow:
        return
    # 3. bucket full: add a level under (prefix, c) for the items still sharing code c.
    info.full_buckets += 1
    groups: dict[int, list[int]] = {}
    for j in overflow:
        groups.setdefault(int(proposals[j]), []).append(j)
    for c in sorted(groups):
        local = groups[c]
        if c in owner_new:  # the winner is new too: extend it as well (keeps SIDs prefix-free)
            local = [owner_new[c]] + local
        sub_items = items[np.array(local)]
        sub_prefix = prefix + (c,)
        sub_used = set(occ.get(sub_prefix))
        m = len(sub_items)
        if not sub_used:
            sub_prop = np.arange(m, dtype=np.int64) % C
        else:
            free_sub = np.setdiff1d(np.arange(C), np.fromiter(sub_used, dtype=np.int64))
            sub_prop = free_sub[np.arange(m) % len(free_sub)] if len(free_sub) else np.arange(m) % C
        _place(sub_prefix, sub_items, sub_prop.astype(np.int64), None, sub_used, occ, C, out, info)


def check_unique(sids: Sequence[Sequence[int]]) -> None:
    """Raise ``AssertionError`` naming a duplicate if two SIDs are equal."""
    seen: dict[tuple[int, ...], int] = {}
    for i, s in enumerate(sids):
        t = tuple(s)
        if t in seen:
            raise AssertionError(f"items {seen[t]} and {i} share the SID {t}")
        seen[t] = i
