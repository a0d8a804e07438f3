"""Teachers: whatever turns chat conversations into answers, with every decoding parameter explicit.

* :class:`LocalTeacher` — a transformers model through :func:`gr2.llm.generate.generate_chat`
  (batched, left-padded; the model's own ``generation_config`` is never consulted).
* :class:`OpenAITeacher` — an OpenAI-compatible ``/chat/completions`` endpoint over ``httpx``:
  every request carries ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and ``n=1`` so the
  server's defaults never decide the sample; a thread pool bounds the requests in flight; 408, 429, 5xx,
  timeouts and connection errors are retried with exponential backoff; anything else, or the last
  failed retry, raises :class:`TeacherError` with the status code and the start of the body.

The sampler (:mod:`gr2.traces.sampling`) passes one seed per conversation. A server seeds each
request with its own seed, so a resumed run asks exactly what an uninterrupted one would have;
local generation seeds torch once per batch (with the batch's first seed), so its samples also
depend on which conversations share a batch.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import httpx

from gr2.llm.generate import GenerationParams
from gr2.traces.config import TracesConfig

log = logging.getLogger(__name__)

__all__ = ["Teacher", "TeacherError", "LocalTeacher", "OpenAITeacher", "make_teacher"]

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


class OpenAITeacher:
    """An OpenAI-compatible chat-completions server, queried concurrently with retries."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 300.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"  # the model, not the address: moving the server keeps the samples
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.extra_body = dict(extra_body or {})
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # One pooled client for all threads (httpx.Client is thread-safe).
        self.client = httpx.Client(headers=headers, timeout=timeout_s,
                                   limits=httpx.Limits(max_connections=concurrency))

    def close(self) -> None:
        self.client.close()

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

    def _wait(self, retry: int) -> float:
        return min(self.backoff_s * 2 ** retry, self.backoff_max_s)

    def _post(self, body: dict[str, Any]) -> str:
        last = ""
        for retry in range(self.max_retries + 1):
            try:
                resp = self.client.post(self.url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    return _content(resp, self.url)
                last = f"HTTP {resp.status_code}: {resp.text[:500]}"
                if resp.status_code not in _RETRY_STATUS:
                    raise TeacherError(f"POST {self.url} failed, not retried: {last}")
            if retry < self.max_retries:
                wait = self._wait(retry)
                log.warning("POST %s: %s; retry %d/%d in %.1fs", self.url, last[:200], retry + 1,
                            self.max_retries, wait)
                time.sleep(wait)
        raise TeacherError(f"POST {self.url} failed after {self.max_retries + 1} tries; last error: {last}")

    def complete(self, conversations: Sequence[Conversation], params: GenerationParams,
                 seeds: Sequence[int] | None = None) -> list[str]:
        if seeds is not None and len(seeds) != len(conversations):
            raise ValueError("one seed per conversation")
        bodies = [self.body(c, params, seeds[i] if seeds is not None else params.seed)
                  for i, c in enumerate(conversations)]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(self._post, b) for b in bodies]
            return [f.result() for f in futures]
        finally:
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
    return OpenAITeacher(cfg.base_url, cfg.model, api_key=key, concurrency=cfg.concurrency,
                         timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                         backoff_max_s=cfg.backoff_max_s, extra_body=cfg.extra_body)
