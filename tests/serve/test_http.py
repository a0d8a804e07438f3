"""The HTTP service over real loopback HTTP (uvicorn in a thread, httpx), on the tiny model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gr2.serve import reranker as reranker_mod
from gr2.serve.http import create_app

from .conftest import raw_id, start_server

HIST = [raw_id(i) for i in (0, 1, 2)]
CANDS = [raw_id(i) for i in (3, 4, 5, 6, 7)]


def _post(url: str, body: dict, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/rerank", json=body, timeout=timeout)


def _slow_scoring(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = reranker_mod.score_direct

    def slow(*args, **kw):
        time.sleep(seconds)
        return real(*args, **kw)

    monkeypatch.setattr(reranker_mod, "score_direct", slow)


def test_direct_happy_path(base_url: str) -> None:
    r = _post(base_url, {"history": HIST, "candidates": CANDS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["ranking"]) == sorted(CANDS) and len(body["scores"]) == len(CANDS)
    assert body["scores"] == sorted(body["scores"], reverse=True)
    assert (body["valid"], body["repaired"], body["fallback"]) == (True, False, False)
    assert body["mode"] == "direct" and body["reasoning"] is None and body["model"].endswith("/midtrain")


def test_reasoning_happy_path_with_an_inline_new_item(base_url: str) -> None:
    cands = CANDS[:3] + [{"id": "HTTP-NEW", "title": "Rose hand cream", "categories": ["Beauty", "Skin Care"]}]
    r = _post(base_url, {"history": HIST, "candidates": cands, "mode": "reasoning", "timeout_ms": 60_000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["ranking"]) == sorted(CANDS[:3] + ["HTTP-NEW"])
    assert body["scores"] is None and sum([body["valid"], body["repaired"], body["fallback"]]) == 1


@pytest.mark.parametrize("body, loc, text", [
    ({"history": ["nope"], "candidates": CANDS}, ["body", "history", 0], "unknown item id 'nope'"),
    ({"candidates": CANDS + ["zzz"]}, ["body", "candidates", 5], "unknown item id 'zzz'"),
    ({"candidates": [CANDS[0], CANDS[1], CANDS[0]]}, ["body", "candidates", 2], "duplicate candidate 'B003'"),
    ({"candidates": CANDS[:1]}, ["body", "candidates"], "1 candidates; K must be between 2 and 50"),
    ({"candidates": [f"x{i}" for i in range(51)]}, ["body", "candidates"], "51 candidates; K must be between"),
    ({"history": [raw_id(0)] * 201, "candidates": CANDS}, ["body", "history"], "201 items; at most 200"),
    ({"candidates": CANDS, "timeout_ms": 10_000_000}, ["body", "timeout_ms"], "exceeds the server's maximum"),
    ({"candidates": CANDS, "timeout_ms": 0}, ["body", "timeout_ms"], "greater than or equal to 1"),
    ({"candidates": CANDS, "mode": "fast"}, ["body", "mode"], "'direct' or 'reasoning'"),
    ({"candidates": CANDS, "extra": 1}, ["body", "extra"], "Extra inputs are not permitted"),
    ({}, ["body", "candidates"], "Field required"),
])
def test_validation_errors_are_422_with_a_precise_message(base_url: str, body: dict, loc: list, text: str) -> None:
    r = _post(base_url, body)
    assert r.status_code == 422, r.text
    details = r.json()["detail"]
    assert any(d["loc"] == loc and text in d["msg"] for d in details), details


@pytest.mark.parametrize("raw, loc", [
    ('{"candidates": %s, "timeout_ms": NaN}', ["body", "timeout_ms"]),
    ('{"candidates": %s, "timeout_ms": Infinity}', ["body", "timeout_ms"]),
    ('{"candidates": %s, "history": [NaN]}', ["body", "history", 0]),
])
def test_non_finite_numbers_are_422_not_500(base_url: str, raw: str, loc: list) -> None:
    import json

    r = httpx.post(f"{base_url}/v1/rerank", content=raw % json.dumps(CANDS),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    assert any(d["loc"][:len(loc)] == loc for d in r.json()["detail"]), r.text


def test_oversized_body_is_413(base_url: str) -> None:
    r = _post(base_url, {"history": ["B000" * 100] * 3000, "candidates": CANDS})
    assert r.status_code == 413


def test_a_chunked_body_past_the_limit_is_413(base_url: str) -> None:
    import json

    body = json.dumps({"history": ["B000" * 100] * 3000, "candidates": CANDS}).encode()

    def chunks():  # no content-length: sent with transfer-encoding chunked
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(f"{base_url}/v1/rerank", content=chunks(), headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 413, r.text[:200]
    assert "exceeds" in r.json()["detail"] and len(r.content) < 1000
    # a small chunked request is still answered
    small = json.dumps({"history": HIST, "candidates": CANDS}).encode()
    r = httpx.post(f"{base_url}/v1/rerank", content=iter([small]), headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 200, r.text


def test_deadline_returns_the_input_order_flagged_fallback(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_scoring(monkeypatch, 1.0)
    t0 = time.monotonic()
    r = _post(base_url, {"history": HIST, "candidates": CANDS, "timeout_ms": 150})
    assert time.monotonic() - t0 < 0.9
    body = r.json()
    assert r.status_code == 200 and body["ranking"] == CANDS and body["scores"] is None
    assert (body["valid"], body["repaired"], body["fallback"], body["fallback_reason"]) == (False, False, True, "deadline")
    time.sleep(1.0)  # let the worker finish before the next test


def test_generation_stops_at_the_deadline(reranker) -> None:
    from gr2.serve.engine import generate_answers

    hist = [reranker.catalogue.get(r) for r in HIST]
    cands = [reranker.catalogue.get(r) for r in CANDS]
    _, ids = reranker._prompt("reasoning", hist, cands)
    [text] = generate_answers(reranker.model, reranker.tokenizer, [ids], [time.monotonic()], max_new_tokens=200)
    assert len(reranker.tokenizer(text, add_special_tokens=False)["input_ids"]) <= 2


@pytest.fixture
def small_server(make_reranker: Callable[..., object]) -> Iterator[str]:
    url, stop = start_server(create_app(make_reranker(max_inflight=2)))  # type: ignore[arg-type]
    yield url
    stop()


def test_overload_is_503_not_an_unbounded_queue(small_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_scoring(monkeypatch, 0.5)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: _post(small_server, {"history": HIST, "candidates": CANDS}), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503} and codes.count(200) >= 2
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "max_inflight 2" in r.json()["detail"]
        else:
            assert sorted(r.json()["ranking"]) == sorted(CANDS)
    metrics = httpx.get(f"{small_server}/metrics").text
    assert f'gr2_http_requests_total{{path="/v1/rerank",status="503"}} {codes.count(503)}' in metrics


def test_concurrent_requests_are_batched_and_answered_like_single_ones(base_url: str, reranker,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [{"history": [raw_id(i % 12), raw_id((i + 1) % 12)][: 1 + i % 2],
               "candidates": [raw_id((i + j) % 12) for j in range(2, 2 + 2 + i % 5)]} for i in range(16)]
    solo = [_post(base_url, b).json() for b in bodies]
    _slow_scoring(monkeypatch, 0.05)  # keep the worker busy so that requests queue up and get batched
    before = reranker.stats()
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda b: _post(base_url, b), bodies))
    after = reranker.stats()
    assert all(r.status_code == 200 for r in together)
    for a, r in zip(solo, together):
        b = r.json()
        assert b["ranking"] == a["ranking"] and b["scores"] == pytest.approx(a["scores"], abs=1e-4)
    batches = after["batches"]["direct"] - before["batches"]["direct"]
    batched = after["batched_requests"]["direct"] - before["batched_requests"]["direct"]
    assert batched == 16 and batches < 16  # some requests shared a forward pass


def test_health_metrics_and_docs(base_url: str) -> None:
    assert _post(base_url, {"history": HIST, "candidates": CANDS}).status_code == 200
    h = httpx.get(f"{base_url}/healthz").json()
    assert h["status"] == "ok" and h["catalogue_items"] == 12 and min(h["prefix_tokens"].values()) > 0
    m = httpx.get(f"{base_url}/metrics")
    assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = m.text
    for series in ('gr2_http_requests_total{path="/v1/rerank",status="200"}',
                   'gr2_rerank_answers_total{mode="direct",outcome="valid"}',
                   'gr2_rerank_latency_seconds_bucket{mode="direct",le="+Inf"}',
                   'gr2_rerank_latency_seconds_count{mode="direct"}',
                   'gr2_batches_total{mode="direct"}', "gr2_inflight_requests 0", "# TYPE gr2_rerank_latency_seconds histogram"):
        assert series in text, series
    assert httpx.get(f"{base_url}/docs").status_code == 200
    spec = httpx.get(f"{base_url}/openapi.json").json()
    assert "/v1/rerank" in spec["paths"] and "raw_id" in spec["components"]["schemas"]["RerankRequest"]["description"]


def test_cli_parser_is_light_and_wires_the_command() -> None:
    import argparse
    import subprocess
    import sys

    code = ("import sys, argparse; from gr2.serve.cli import add_serve_parser; "
            "add_serve_parser(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('torch', 'fastapi', 'transformers', 'pandas') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    from gr2.serve.cli import add_serve_parser, serve_command

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--run-dir", "runs/x", "--port", "0", "--no-prefix-cache"])
    assert args.handler is serve_command and args.host == "127.0.0.1" and args.no_prefix_cache and args.max_batch == 8


@pytest.mark.parametrize("flags, message", [
    (["--max-candidates", "0"], "max_candidates must be >= min_candidates (2), got 0"),
    (["--timeout", "-1"], "default_timeout_s (--timeout) must be in (0,"),
    (["--max-inflight", "0"], "max_inflight must be >= 1, got 0"),
    (["--max-batch", "0"], "max_batch_direct must be >= 1, got 0"),
])
def test_bad_serve_flags_are_one_line_errors_with_exit_code_2(flags: list, message: str, capsys) -> None:
    import argparse

    from gr2.serve.cli import add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--run-dir", "runs/does-not-matter", *flags])
    assert args.handler(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gr2 serve: error: serve: ") and message in err and "\n" not in err


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=8), st.sampled_from(CANDS + HIST)),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)
_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={"history": _JSON, "candidates": _JSON, "mode": _JSON, "timeout_ms": _JSON,
                                        "extra": _JSON}),
    st.fixed_dictionaries({"candidates": st.lists(st.sampled_from(CANDS + HIST + ["nope"]), max_size=8)},
                          optional={"history": st.lists(st.sampled_from(CANDS + HIST), max_size=5),
                                    "timeout_ms": st.one_of(st.integers(-5, 10**8), st.floats())}),
    _JSON,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_any_json_body_is_answered_without_a_server_error(base_url: str, body) -> None:
    import json

    r = httpx.post(f"{base_url}/v1/rerank", content=json.dumps(body), headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code in (200, 413, 422, 503), (r.status_code, r.text[:300])
    if r.status_code == 200:
        assert sorted(r.json()["ranking"]) == sorted(body["candidates"])
    else:
        assert r.json()["detail"]
