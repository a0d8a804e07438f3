"""Limits and switches of the serving layer (pure: read by the CLI without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """Limits and switches of a :class:`Reranker` (all per process)."""

    min_candidates: int = 2
    max_candidates: int = 50
    max_history_items: int = 200
    """Requests with a longer history are rejected (the prompt keeps ``prompt.max_history`` of them)."""
    default_timeout_s: float = 30.0
    """Deadline of a request that does not set one."""
    max_timeout_s: float = 300.0
    max_inflight: int = 64
    """Requests queued or running at most; more are refused (:class:`Overloaded`, HTTP 503)."""
    max_batch_direct: int = 8
    max_batch_reasoning: int = 4
    max_new_tokens: int = 512
    """Reasoning mode: tokens generated per answer at most."""
    prefix_cache: bool = True
    """Compute each mode's shared system-prompt prefix once and reuse its KV cache."""
    max_new_items: int = 100_000
    """Cold start: new items given SIDs per process at most."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_candidates <= self.max_candidates:
            raise ValueError("need 1 <= min_candidates <= max_candidates")
        if min(self.max_inflight, self.max_batch_direct, self.max_batch_reasoning, self.max_new_tokens) < 1:
            raise ValueError("max_inflight, max_batch_* and max_new_tokens must be >= 1")
        if not 0 < self.default_timeout_s <= self.max_timeout_s:
            raise ValueError("need 0 < default_timeout_s <= max_timeout_s")
