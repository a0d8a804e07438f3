"""Limits and switches of the serving layer (pure: read by the CLI without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from gr2.checks import at_least, check, positive

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
        check("serve", {
            f"min_candidates must be >= 1, got {self.min_candidates}": at_least(self.min_candidates, 1),
            f"max_candidates must be >= min_candidates ({self.min_candidates}), got {self.max_candidates}":
                at_least(self.max_candidates, max(self.min_candidates, 1)),
            f"max_inflight must be >= 1, got {self.max_inflight}": at_least(self.max_inflight, 1),
            f"max_batch_direct must be >= 1, got {self.max_batch_direct}": at_least(self.max_batch_direct, 1),
            f"max_batch_reasoning must be >= 1, got {self.max_batch_reasoning}": at_least(self.max_batch_reasoning, 1),
            f"max_new_tokens must be >= 1, got {self.max_new_tokens}": at_least(self.max_new_tokens, 1),
            f"default_timeout_s (--timeout) must be in (0, max_timeout_s = {self.max_timeout_s}], got "
            f"{self.default_timeout_s}": positive(self.default_timeout_s) and self.default_timeout_s <= self.max_timeout_s,
        })
