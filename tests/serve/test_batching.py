"""The dynamic batcher alone (no model): grouping, bound, deadlines, cancellation, failures."""

from __future__ import annotations

import threading
import time

import pytest

from gr2.serve.batching import Batcher, Overloaded


class Recorder:
    """A batch function that records its batches and can be held until released."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail = fail

    def __call__(self, key: str, payloads: list[int], deadlines: list[float]) -> list[str]:
        self.started.set()
        self.gate.wait(5)
        self.batches.append((key, list(payloads)))
        if self.fail:
            raise RuntimeError("boom")
        return [f"{key}:{p}" for p in payloads]


def make(run: Recorder, capacity: int = 100, **max_batch: int) -> Batcher:
    return Batcher(run, max_batch or {"a": 3, "b": 2}, capacity,
                   expired=lambda p: f"expired:{p}", failed=lambda p, e: f"failed:{p}:{e}")


def test_batches_group_one_key_in_arrival_order_up_to_max_batch() -> None:
    run = Recorder()
    b = make(run)
    far = time.monotonic() + 30
    first = b.submit("a", 0, far)
    assert run.started.wait(5)  # the worker holds request 0; the rest queue behind it
    futs = [b.submit(k, i, far) for i, k in enumerate("abaaab", start=1)]
    run.gate.set()
    assert first.result(5) == "a:0" and [f.result(5) for f in futs] == [
        "a:1", "b:2", "a:3", "a:4", "a:5", "b:6"]
    assert run.batches == [("a", [0]), ("a", [1, 3, 4]), ("b", [2, 6]), ("a", [5])]
    assert b.stats()["batches"] == {"a": 3, "b": 1} and b.in_flight == 0
    b.close()


def test_capacity_bounds_queued_plus_running_requests() -> None:
    run = Recorder()
    b = make(run, capacity=2)
    far = time.monotonic() + 30
    f1 = b.submit("a", 1, far)
    f2 = b.submit("a", 2, far)
    with pytest.raises(Overloaded, match="capacity 2"):
        b.submit("a", 3, far)
    run.gate.set()
    assert f1.result(5) and f2.result(5)
    assert b.submit("a", 4, far).result(5) == "a:4"  # room again once answered
    b.close()


def test_expired_and_cancelled_requests_are_not_computed() -> None:
    run = Recorder()
    b = make(run)
    blocker = b.submit("a", 0, time.monotonic() + 30)
    assert run.started.wait(5)
    expired = b.submit("b", 1, time.monotonic() + 0.01)
    cancelled = b.submit("b", 2, time.monotonic() + 30)
    assert cancelled.cancel()
    time.sleep(0.05)
    run.gate.set()
    assert blocker.result(5) == "a:0" and expired.result(5) == "expired:1" and cancelled.cancelled()
    b.close()
    assert run.batches == [("a", [0])]
    assert b.stats()["expired_in_queue"] == 1 and b.stats()["cancelled"] == 1 and b.in_flight == 0


def test_a_failing_batch_answers_every_request() -> None:
    run = Recorder(fail=True)
    run.gate.set()
    b = make(run)
    fut = b.submit("a", 7, time.monotonic() + 30)
    assert fut.result(5) == "failed:7:boom" and b.in_flight == 0
    b.close()
