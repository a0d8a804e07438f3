"""HTTP re-ranking service: FastAPI app over a :class:`~gr2.serve.reranker.Reranker`.

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /v1/rerank`` — a user history and K candidates, as the catalogue's item ids (``raw_id``)
  or as inline items with their text (items the catalogue lacks get an SID on the fly); answers
  with the candidates re-ranked, always a permutation of the input. 422 with a precise message per
  problem (unknown id, duplicate candidate, K out of range, oversized history, bad timeout); 503
  when ``max_inflight`` requests are already queued or running; 413 for bodies over
  ``max_body_bytes``. After the request's deadline the input order is returned flagged
  ``fallback``.
* ``GET /healthz`` — liveness and queue state.
* ``GET /metrics`` — Prometheus text: requests by status, latency histogram per mode, valid /
  repaired / fallback counts, batches, queue depth.

``serve(run_dir, host, port)`` runs it with uvicorn (the command line is :mod:`gr2.serve.cli`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from gr2.serve.batching import Overloaded
from gr2.serve.catalogue import Item
from gr2.serve.config import ServeConfig
from gr2.serve.metrics import CONTENT_TYPE, Counter, Histogram, gauge_lines
from gr2.serve.reranker import RequestError, Reranker, RerankResult

log = logging.getLogger(__name__)

__all__ = ["RerankRequest", "RerankResponse", "create_app", "serve"]

ItemId = Annotated[str, Field(min_length=1, max_length=256)]


class InlineItem(BaseModel):
    """An item given with its text (for items the catalogue lacks: its SID is computed from this
    text). An id the catalogue already has uses the catalogue's item; the text is then ignored."""

    model_config = ConfigDict(extra="forbid")
    id: ItemId = Field(description="Your id for the item (a catalogue raw_id, or a new one).")
    title: str = Field("", max_length=2000)
    categories: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=32, description="Category path, most general first.")
    description: str = Field("", max_length=10_000)


class RerankRequest(BaseModel):
    """Items are named by the catalogue's ``raw_id`` strings (``data/items.parquet``), or given
    inline with their text."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"history": ["B00004TMFE", "B0000530HU"], "candidates": ["B00004TUBL", "B000052YAN", "B0000530ED"],
         "mode": "direct", "timeout_ms": 2000},
        {"history": ["B00004TMFE"], "candidates": ["B00004TUBL", {"id": "NEW-42", "title": "Argan oil shampoo",
                                                                "categories": ["Beauty", "Hair Care"]}],
         "mode": "reasoning"},
    ]})
    history: list[ItemId | InlineItem] = Field(
        default_factory=list, description="The user's items, oldest first (catalogue raw_ids or inline items).")
    candidates: list[ItemId | InlineItem] = Field(
        description="The K items to re-rank, in the pre-ranker's order (catalogue raw_ids or inline items; distinct).")
    mode: Literal["direct", "reasoning"] = Field(
        "direct", description="direct: reasoning-free scoring of every candidate in one forward pass (returns "
                              "scores); reasoning: the model writes an explanation, then the ranking.")
    timeout_ms: int | None = Field(
        None, ge=1, description="Deadline for this request; after it the input order is returned flagged "
                                "fallback. Default: the server's.")


class RerankResponse(BaseModel):
    ranking: list[str] = Field(description="The candidate ids, best first: always a permutation of the request's.")
    scores: list[float | None] | None = Field(
        description="Direct mode: log-probability of each ranked candidate being the first recommendation "
                    "(aligned with ranking). Null in reasoning mode and on fallback.")
    reasoning: str | None = Field(description="Reasoning mode: the explanation (or the raw answer when none could be read).")
    valid: bool = Field(description="The model's own answer was a complete, valid ranking.")
    repaired: bool = Field(description="The answer had errors and was repaired (missing candidates appended in input order).")
    fallback: bool = Field(description="The input order was returned.")
    fallback_reason: Literal["deadline", "unparseable", "error"] | None
    mode: Literal["direct", "reasoning"]
    latency_ms: float = Field(description="Server-side time from validation to answer.")
    prompt_tokens: int = Field(description="Tokens of the prompt the model read (or would have read).")
    model: str


class _Metrics:
    def __init__(self) -> None:
        self.http = Counter("gr2_http_requests_total", "HTTP requests by path and status.", ("path", "status"))
        self.answers = Counter("gr2_rerank_answers_total", "Re-ranking answers by mode and outcome "
                               "(valid, repaired, fallback).", ("mode", "outcome"))
        self.fallbacks = Counter("gr2_rerank_fallback_total", "Answers in input order, by reason.", ("mode", "reason"))
        self.latency = Histogram("gr2_rerank_latency_seconds", "Server-side latency of answered re-ranking "
                                 "requests.", ("mode",))

    def observe(self, res: RerankResult) -> None:
        outcome = "fallback" if res.fallback else "repaired" if res.repaired else "valid"
        self.answers.inc(res.mode, outcome)
        if res.fallback:
            self.fallbacks.inc(res.mode, res.fallback_reason or "unknown")
        self.latency.observe(res.latency_s, res.mode)

    def render(self, stats: dict[str, Any]) -> str:
        lines = [*self.http.render(), *self.answers.render(), *self.fallbacks.render(), *self.latency.render()]
        lines += gauge_lines("gr2_inflight_requests", "Requests queued or running.", stats["in_flight"])
        lines += gauge_lines("gr2_queued_requests", "Requests waiting for the model.", stats["queued"])
        lines += gauge_lines("gr2_max_inflight_requests", "Bound on requests in flight (503 beyond).", stats["capacity"])
        lines += gauge_lines("gr2_batches_total", "Model batches run.",
                             {(k,): v for k, v in stats["batches"].items()}, ("mode",), "counter")
        lines += gauge_lines("gr2_batched_requests_total", "Requests computed in batches (÷ batches = mean batch size).",
                             {(k,): v for k, v in stats["batched_requests"].items()}, ("mode",), "counter")
        lines += gauge_lines("gr2_expired_in_queue_total", "Requests whose deadline passed before computation.",
                             stats["expired_in_queue"], kind="counter")
        lines += gauge_lines("gr2_new_items", "Items given an SID on the fly (cold start).", stats["new_items"])
        return "\n".join(lines) + "\n"


def _ref(x: str | InlineItem) -> str | Item:
    return x if isinstance(x, str) else Item(x.id, x.title, tuple(x.categories), x.description)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class _BodyLimit:
    """ASGI middleware: a request body that grows past ``max_bytes`` while it is read is answered 413.
    The ``content-length`` check (``count`` in :func:`create_app`) cannot see a chunked body, which
    has no length up front."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        read, refused = 0, False

        async def limited() -> Any:
            nonlocal read, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                read += len(message.get("body", b""))
                if read > self.max_bytes:  # answer now; the app then sees the client gone
                    refused = True
                    await JSONResponse({"detail": f"request body exceeds {self.max_bytes} bytes"}, 413)(
                        scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            if not refused:  # after the 413, whatever the app answers is dropped
                await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not refused:
                raise


def create_app(reranker: Reranker, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The FastAPI app serving ``reranker`` (which the caller owns and closes)."""
    app = FastAPI(title="gr2 re-ranker", version="1",
                  description="Re-ranks K candidate items for a user with a GR2 model. Items are named by the "
                              "catalogue's raw_id strings (the ids of data/items.parquet), or sent inline with "
                              "their text. The answer is always a permutation of the candidates.")
    metrics = _Metrics()
    limit_ms = int(reranker.config.max_timeout_s * 1000)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            response: Any = JSONResponse({"detail": f"request body of {size} bytes exceeds {max_body_bytes}"}, 413)
        else:
            response = await call_next(request)
        metrics.http.inc(request.url.path if request.url.path in _PATHS else "other", str(response.status_code))
        return response

    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # location, message and type of each problem; not the offending input, which may not even be
        # valid JSON to send back (a NaN timeout_ms made the default 422 body fail to serialise: 500)
        return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                                         "type": str(e.get("type", ""))} for e in exc.errors()]}, 422)

    @app.post("/v1/rerank", response_model=RerankResponse, responses={
        422: {"description": "Invalid request: one entry per problem, with its location."},
        503: {"description": "Overloaded: too many requests in flight; retry later (Retry-After)."}})
    async def rerank(req: RerankRequest) -> RerankResponse:
        if req.timeout_ms is not None and req.timeout_ms > limit_ms:
            raise HTTPException(422, [{"loc": ["body", "timeout_ms"], "type": "value_error",
                                       "msg": f"{req.timeout_ms} ms exceeds the server's maximum of {limit_ms} ms"}])
        timeout = req.timeout_ms / 1000 if req.timeout_ms is not None else None
        try:
            pending = await run_in_threadpool(reranker.submit, [_ref(x) for x in req.history],
                                              [_ref(x) for x in req.candidates], req.mode, timeout)
        except RequestError as exc:
            raise HTTPException(422, [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}
                                      for loc, msg in exc.errors]) from None
        except Overloaded as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        res = await pending.result_async()
        metrics.observe(res)
        return RerankResponse(ranking=res.order, scores=None if res.scores is None else [_finite(s) for s in res.scores],
                              reasoning=res.reasoning, valid=res.valid, repaired=res.repaired, fallback=res.fallback,
                              fallback_reason=res.fallback_reason, mode=res.mode,  # type: ignore[arg-type]
                              latency_ms=round(res.latency_s * 1000, 3), prompt_tokens=res.prompt_tokens,
                              model=reranker.name)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", **reranker.stats()}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(reranker.stats()), media_type=CONTENT_TYPE)

    return app


_PATHS = {"/v1/rerank", "/healthz", "/metrics", "/docs", "/openapi.json"}


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, stage: str | None = None,
          config: ServeConfig | None = None, threads: int | None = None, log_level: str = "info") -> None:
    """Load the run's model and serve it until interrupted (blocks)."""
    import torch
    import uvicorn

    if threads:
        torch.set_num_threads(threads)
    reranker = Reranker.load(run_dir, stage=stage, config=config)
    log.info("loaded %s (%d items; cached prompt prefix, tokens: %s)", reranker.name, len(reranker.catalogue),
             {m: len(c) for m, c in reranker.prefixes.items()} or "off")
    try:
        uvicorn.run(create_app(reranker), host=host, port=port, log_level=log_level)
    finally:
        reranker.close()
