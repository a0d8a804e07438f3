"""Dynamic batching with a hard bound on the work in flight.

One worker thread owns the model (a CPU forward already uses every core; two at once would only
compete). Requests are queued with a *key* (the serving mode: direct and reasoning requests cost
very differently and are never mixed) and a deadline. Whenever the worker is free it takes the
oldest request and, in arrival order, up to ``max_batch[key] - 1`` more of the same key that are
already waiting — no timer: under load the queue fills while the previous batch runs, so batches
grow exactly when batching pays, and an idle server answers a lone request at once.

Bounds and deadlines:

* ``capacity`` caps the requests submitted and not yet finished (queued + running);
  :meth:`Batcher.submit` raises :class:`Overloaded` beyond it instead of queueing without limit.
* A request whose future was cancelled (its caller stopped waiting) is skipped, and one whose
  deadline passed while it was queued is answered with ``expired(payload)`` without being computed.
* An exception in a batch answers each of its requests with ``failed(payload, exc)``: a batch
  never leaves a caller without a result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

__all__ = ["Batcher", "Overloaded"]


class Overloaded(RuntimeError):
    """Too many requests in flight; retry later (HTTP 503)."""


@dataclass
class _Job(Generic[P, R]):
    key: str
    payload: P
    deadline: float
    future: Future


class Batcher(Generic[P, R]):
    """``run(key, payloads, deadlines) -> results`` on one worker thread, in dynamic batches."""

    def __init__(
        self,
        run: Callable[[str, list[P], list[float]], Sequence[R]],
        max_batch: Mapping[str, int],
        capacity: int,
        expired: Callable[[P], R],
        failed: Callable[[P, BaseException], R],
        name: str = "gr2-batcher",
    ) -> None:
        if capacity < 1 or any(v < 1 for v in max_batch.values()):
            raise ValueError("capacity and max_batch must be >= 1")
        self._run, self._expired, self._failed = run, expired, failed
        self.max_batch = dict(max_batch)
        self.capacity = int(capacity)
        self._queue: deque[_Job[P, R]] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self.batches: dict[str, int] = {k: 0 for k in self.max_batch}
        self.batched: dict[str, int] = {k: 0 for k in self.max_batch}
        self.expired_in_queue = 0
        self.cancelled = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        """Requests submitted and not finished (queued + running)."""
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and metrics."""
        return {"in_flight": self._in_flight, "queued": len(self._queue), "capacity": self.capacity,
                "batches": dict(self.batches), "batched_requests": dict(self.batched),
                "expired_in_queue": self.expired_in_queue, "cancelled": self.cancelled}

    def has_room(self) -> bool:
        return self._in_flight < self.capacity

    def submit(self, key: str, payload: P, deadline: float) -> Future:
        """Queue one request; its future resolves to ``run``'s result (or ``expired``/``failed``)."""
        if key not in self.max_batch:
            raise ValueError(f"unknown batch key {key!r}")
        job: _Job[P, R] = _Job(key, payload, deadline, Future())
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._in_flight >= self.capacity:
                raise Overloaded(f"{self._in_flight} requests in flight (capacity {self.capacity}); retry later")
            self._in_flight += 1
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop after the running batch; queued requests are answered as failed."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            if job.future.set_running_or_notify_cancel():
                job.future.set_result(self._failed(job.payload, RuntimeError("server shutting down")))
            self._done(1)
        self._thread.join(timeout)

    # -- worker ---------------------------------------------------------------------------------
    def _done(self, n: int) -> None:
        with self._cond:
            self._in_flight -= n

    def _take(self) -> list[_Job[P, R]] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            key = self._queue[0].key
            limit = self.max_batch[key]
            batch: list[_Job[P, R]] = []
            rest: deque[_Job[P, R]] = deque()
            while self._queue:
                job = self._queue.popleft()
                (batch if job.key == key and len(batch) < limit else rest).append(job)
            self._queue = rest
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            live: list[_Job[P, R]] = []
            now = time.monotonic()
            for job in batch:
                if not job.future.set_running_or_notify_cancel():
                    self.cancelled += 1
                    self._done(1)
                elif now >= job.deadline:
                    self.expired_in_queue += 1
                    self._done(1)
                    job.future.set_result(self._expired(job.payload))
                else:
                    live.append(job)
            if not live:
                continue
            key = live[0].key
            self.batches[key] += 1
            self.batched[key] += len(live)
            try:
                results = list(self._run(key, [j.payload for j in live], [j.deadline for j in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} requests")
            except BaseException as exc:  # noqa: BLE001 - every caller still gets an answer
                log.exception("batch of %d %s requests failed", len(live), key)
                results = [self._failed(j.payload, exc) for j in live]
            self._done(len(live))  # the work is over: free the slots before waking the callers
            for job, res in zip(live, results):
                job.future.set_result(res)

