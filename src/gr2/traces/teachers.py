"""Teachers: whatever turns chat conversations into answers, with every decoding parameter explicit.

* :class:`LocalTeacher` — a transformers model through :func:`gr2.llm.generate.generate_chat`
  (batched, left-padded; the model's own ``generation_config`` is never consulted).
* :class:`OpenAITeacher` — one or several OpenAI-compatible ``/chat/completions`` servers of the
  same model over ``httpx``: every request carries ``temperature``, ``top_p``, ``max_tokens``,
  ``seed`` and ``n=1`` so the server's defaults never decide the sample; a thread pool bounds the
  requests in flight; each goes to the least busy server that is up; 408, 429, 5xx, timeouts and
  connection errors mark the server down for an exponentially growing while and retry the request
  on another; anything else, or a request out of tries, raises :class:`TeacherError` (with the
  status code and the start of the body, or every server's state and last error).

The sampler (:mod:`gr2.traces.sampling`) passes one seed per conversation. A server seeds each
request with its own seed, so a resumed run asks exactly what an uninterrupted one would have
(whichever server of the pool answers it); local generation seeds torch once per batch (with the
batch's first seed), so its samples also depend on which conversations share a batch.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from gr2.llm.generate import GenerationParams
from gr2.traces.config import TracesConfig

log = logging.getLogger(__name__)

__all__ = ["LocalTeacher", "OpenAITeacher", "ServerState", "Teacher", "TeacherError", "make_teacher"]

Conversation = Sequence[dict[str, str]]
_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


class TeacherError(RuntimeError):
    """A teacher call that failed for good (a RuntimeError, which the CLI reports cleanly)."""


class Teacher(Protocol):
    """Answers chat conversations, one string per conversation, in input order."""

    name: str
    """Recorded with every sample (e.g. ``local:qwen2.5-1.5b``)."""

    def complete(self, conversations: Sequence[Conversation], params: GenerationParams,
                 seeds: Sequence[int] | None = None) -> list[str]:
        """``seeds[i]`` is conversation i's seed (``None``: ``params.seed`` for all)."""
        ...


class LocalTeacher:
    """A local transformers model; one :func:`generate_chat` call per :meth:`complete`."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "local", batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(cls, name_or_path: str, device: str | None = None, dtype: str = "float32",
             batch_size: int = 8) -> LocalTeacher:
        """Load through the model registry (offline; see :func:`gr2.llm.registry.load`)."""
        import torch

        from gr2.llm.registry import load

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load(name_or_path, dtype=dtype, device=device)
        return cls(model, tokenizer, name=f"local:{name_or_path}", batch_size=batch_size)

    def complete(self, conversations: Sequence[Conversation], params: GenerationParams,
                 seeds: Sequence[int] | None = None) -> list[str]:
        from gr2.llm.generate import generate_chat

        if seeds:
            params = replace(params, seed=int(seeds[0]))
        return generate_chat(self.model, self.tokenizer, conversations, params, batch_size=self.batch_size)


@dataclass
class ServerState:
    """One server of an :class:`OpenAITeacher`'s pool (read and written under the teacher's lock)."""

    url: str
    """The base URL as configured (``.../v1``)."""
    endpoint: str
    """``{url}/chat/completions``."""
    index: int
    in_flight: int = 0
    sent: int = 0
    answered: int = 0
    failed: int = 0
    down_until: float = 0.0
    """``time.monotonic()`` before which the server gets no request."""
    failures_in_row: int = 0
    """Down periods since its last answer: the n-th lasts ``backoff_s * 2**(n-1)`` (capped)."""
    marks: int = 0
    """How often it was marked down. A request remembers the count it was sent under: one sent
    before the latest mark neither lengthens the down period when it fails nor ends the failure
    streak when it is answered late (it says nothing about the server since)."""
    last_error: str = ""

    def is_down(self, now: float) -> bool:
        """Left out of the balancing now (inside its down period)."""
        return now < self.down_until

    @property
    def failing(self) -> bool:
        """Its last finished request failed (down, or past its down period and not yet answering)."""
        return self.failures_in_row > 0


class _Stopped(TeacherError):
    """A request abandoned because another request of the same call failed for good."""


class OpenAITeacher:
    """A pool of OpenAI-compatible chat-completions servers of one model, queried concurrently.

    **Balancing.** Each request goes to the server with the fewest requests in flight among those
    not down, ties broken round-robin; the pool's concurrency is ``concurrency`` in all.

    **Failover.** A request that fails on a server with a connection error, a timeout, HTTP 408,
    429 or 5xx marks that server down for ``backoff_s * 2**(n-1)`` seconds (its n-th failure in a
    row, at most ``backoff_max_s``; failures of requests sent before it was marked do not lengthen
    it) and is retried at once on another server, ``max_retries`` times at most in all; it waits
    only while every server is down, until the first comes back (with one server this is plain
    exponential backoff). A server's next answer resets its count. Any other HTTP status is not
    retried anywhere (see :meth:`_post`). A request that runs out of tries raises one
    :class:`TeacherError` naming every server with its state and last error; the call's other
    requests then stop after their current HTTP call, and :meth:`complete` returns none of its answers.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 300.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
    ):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("OpenAITeacher needs at least one base URL")
        self.servers = [ServerState(u, u.rstrip("/") + "/chat/completions", i) for i, u in enumerate(urls)]
        self.model = model
        self.name = f"openai:{model}"  # the model, not the addresses: moving or adding servers keeps the samples
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.extra_body = dict(extra_body or {})
        self._lock = threading.Lock()
        self._next = 0  # round-robin start among equally loaded servers
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # One pooled client for all threads and servers (httpx.Client is thread-safe).
        self.client = httpx.Client(headers=headers, timeout=timeout_s,
                                   limits=httpx.Limits(max_connections=concurrency))

    def close(self) -> None:
        log.info("teacher servers: %s", "; ".join(
            f"{s.url} {s.answered} answered, {s.failed} failed" for s in self.servers))
        self.client.close()

    def server_stats(self) -> list[dict[str, Any]]:
        """Per server: ``url``, ``sent``, ``answered``, ``failed``, ``down`` (its last request
        failed, no answer since), ``down_for_s`` (left of its down period) and ``last_error``."""
        with self._lock:
            now = time.monotonic()
            return [{"url": s.url, "sent": s.sent, "answered": s.answered, "failed": s.failed,
                     "down": s.failing, "down_for_s": round(max(0.0, s.down_until - now), 3),
                     "last_error": s.last_error} for s in self.servers]

    def body(self, conversation: Conversation, params: GenerationParams, seed: int | None) -> dict[str, Any]:
        """The request: every decoding parameter set, none left to the server."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in conversation],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "n": 1,
            "stream": False,
        }
        if seed is not None:
            body["seed"] = int(seed)
        body.update(self.extra_body)
        return body

    def _down_for(self, failures_in_row: int) -> float:
        return min(self.backoff_s * 2 ** (failures_in_row - 1), self.backoff_max_s)

    def _acquire(self, tried: set[int], stop: threading.Event) -> tuple[ServerState, int]:
        """The server for the next try (and its ``marks`` now): not down, fewest in flight,
        preferring those this request has not tried; round-robin among ties. Waits while every
        server is down."""
        while True:
            with self._lock:
                if stop.is_set():
                    raise _Stopped("abandoned: another request of this call failed")
                now = time.monotonic()
                up = [s for s in self.servers if not s.is_down(now)]
                if up:
                    n = len(self.servers)
                    fresh = [s for s in up if s.index not in tried] or up
                    best = min(fresh, key=lambda s: (s.in_flight, (s.index - self._next) % n))
                    self._next = (best.index + 1) % n
                    best.in_flight += 1
                    best.sent += 1
                    return best, best.marks
                wait = min(s.down_until for s in self.servers) - now
            stop.wait(wait)

    def _release(self, server: ServerState, marks: int, error: str | None, down: bool = False) -> None:
        """Count a finished try; ``marks``: the server's count when it was sent."""
        with self._lock:
            server.in_flight -= 1
            fresh = marks == server.marks  # sent after the server's latest down mark
            if error is None:
                server.answered += 1
                if fresh:
                    server.failures_in_row = 0
                return
            server.failed += 1
            server.last_error = error
            if down and fresh:
                now = time.monotonic()
                server.marks += 1
                server.failures_in_row += 1
                server.down_until = now + self._down_for(server.failures_in_row)
                log.warning("teacher server %s down for %.1fs (failure %d in a row): %s", server.url,
                            server.down_until - now, server.failures_in_row, error[:200])

    def _post(self, body: dict[str, Any], stop: threading.Event) -> str:
        tried: set[int] = set()
        tries = self.max_retries + 1
        for attempt in range(1, tries + 1):
            server, marks = self._acquire(tried, stop)
            tried.add(server.index)
            try:
                resp = self.client.post(server.endpoint, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            except BaseException as exc:  # an interrupt, or the client closed under us: not retried
                self._release(server, marks, f"{type(exc).__name__}: {exc}")
                raise
            else:
                if resp.status_code == 200:
                    self._release(server, marks, None)
                    return _content(resp, server.endpoint)
                error = f"HTTP {resp.status_code}: {resp.text[:500]}"
                if resp.status_code not in _RETRY_STATUS:
                    # Any other status (400 bad request, 401/403 key, 404 model or path, 413/422 ...)
                    # is about the request or the configuration, not about this server's health:
                    # every server of the pool serves the same model and would refuse it the same
                    # way, so a retry elsewhere would only repeat the failure (and mark healthy
                    # servers down). Stop with the server's own words instead.
                    self._release(server, marks, error)
                    raise TeacherError(f"POST {server.endpoint} failed, not retried: {error}")
            self._release(server, marks, error, down=True)
            if attempt < tries:
                log.warning("POST %s: %s; retry %d/%d on the pool", server.endpoint, error[:200], attempt,
                            self.max_retries)
        raise TeacherError(self._exhausted(tries))

    def _exhausted(self, tries: int) -> str:
        """The error of a request out of tries: every server, its state and its last error."""
        with self._lock:
            down = [s for s in self.servers if s.failing]
            state = "; ".join(
                f"{s.url} ({'down' if s.failing else 'up'}, {s.answered} answered, {s.failed} failed): "
                f"{s.last_error[:300] or 'no error'}" for s in self.servers)
        what = ("every teacher server is down" if len(down) == len(self.servers)
                else f"{len(down)} of {len(self.servers)} teacher servers down")
        return f"POST /chat/completions failed after {tries} tries; {what} — {state}"

    def complete(self, conversations: Sequence[Conversation], params: GenerationParams,
                 seeds: Sequence[int] | None = None) -> list[str]:
        """All answers, in input order, or the first failed request's :class:`TeacherError` (then
        nothing of the call is returned: the sampler stores a batch whole or not at all)."""
        if seeds is not None and len(seeds) != len(conversations):
            raise ValueError("one seed per conversation")
        bodies = [self.body(c, params, seeds[i] if seeds is not None else params.seed)
                  for i, c in enumerate(conversations)]
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency)
        futures: list[concurrent.futures.Future[str]] = []
        try:
            futures = [pool.submit(self._post, b, stop) for b in bodies]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and f.exception() is not None]
            if errors:  # the other requests are stopped below, before the error leaves this call
                raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
            return [f.result() for f in futures]
        finally:
            # After an error (or an interrupt) the requests still in flight end after their current
            # HTTP call (a blocking read cannot be cut short; the interpreter would wait for it at
            # exit anyway) and try nothing more: nothing of this call runs on after it. The one
            # stop.set() of every path; it must come before the shutdown, which waits for the workers:
            # one waiting in _acquire (every server down) or about to retry ends only on it.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def _content(resp: httpx.Response, url: str) -> str:
    """``choices[0].message.content`` of a chat-completions reply ("" when the server sends null)."""
    try:
        content = resp.json()["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise TeacherError(f"POST {url}: unexpected reply ({exc!r}): {resp.text[:500]}") from None
    return "" if content is None else str(content)


def make_teacher(cfg: TracesConfig) -> LocalTeacher | OpenAITeacher:
    """The teacher ``cfg`` describes (loads the local model; reads the API key from the env var)."""
    if cfg.teacher == "local":
        return LocalTeacher.load(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    key = None
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise TeacherError(f"traces.api_key_env={cfg.api_key_env!r} but that environment variable is "
                               "not set (leave api_key_env empty for a server without authentication)")
    return OpenAITeacher(cfg.servers, cfg.model, api_key=key, concurrency=cfg.concurrency,
                         timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                         backoff_max_s=cfg.backoff_max_s, extra_body=cfg.extra_body)
