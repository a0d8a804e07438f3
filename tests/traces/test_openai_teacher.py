"""OpenAITeacher against a real HTTP server on 127.0.0.1 that speaks chat-completions JSON (one server;
the pool of several: test_teacher_pool.py)."""

from __future__ import annotations

import socket

import pytest

from gr2.llm.generate import GenerationParams
from gr2.traces.config import TracesConfig
from gr2.traces.teachers import OpenAITeacher, TeacherError, make_teacher


@pytest.fixture
def server(make_server):
    return make_server()


def convs(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "sys"}, {"role": "user", "content": f"q{i}"}] for i in range(n)]


PARAMS = GenerationParams(max_new_tokens=33, temperature=0.7, top_p=0.9, seed=5)


def teacher(server, **kw) -> OpenAITeacher:
    kw = {"backoff_s": 0.001, "backoff_max_s": 0.01, "max_retries": 2, **kw}
    return OpenAITeacher(server.base_url + "/", "tiny-teacher", **kw)


def test_request_carries_every_parameter_and_the_key(server):
    t = teacher(server, api_key="sekrit", extra_body={"top_k": -1, "repetition_penalty": 1.0})
    out = t.complete(convs(3), PARAMS, seeds=[11, 12, 13])
    assert out == ["reply:q0", "reply:q1", "reply:q2"]
    assert t.name == "openai:tiny-teacher"
    reqs = sorted(server.requests, key=lambda r: r["body"]["seed"])
    for i, r in enumerate(reqs):
        assert r["path"] == "/v1/chat/completions"
        assert r["headers"]["Authorization"] == "Bearer sekrit"
        assert r["body"] == {"model": "tiny-teacher", "messages": convs(3)[i], "temperature": 0.7, "top_p": 0.9,
                             "max_tokens": 33, "n": 1, "stream": False, "seed": 11 + i, "top_k": -1,
                             "repetition_penalty": 1.0}
    t.close()


def test_no_key_no_header_and_params_seed(server):
    t = teacher(server)
    assert t.complete(convs(1), PARAMS) == ["reply:q0"]
    (r,) = server.requests
    assert "Authorization" not in r["headers"] and r["body"]["seed"] == 5


def test_retry_after_500_then_success(server):
    server.script = [(500, "boom"), (429, "slow down")]
    assert teacher(server).complete(convs(1), PARAMS) == ["reply:q0"]
    assert len(server.requests) == 3


def test_failure_after_max_retries(server):
    server.script = [(503, "overloaded " + "x" * 2000)] * 10
    with pytest.raises(TeacherError, match=r"after 3 tries.*HTTP 503: overloaded") as err:
        teacher(server, max_retries=2).complete(convs(1), PARAMS)
    assert len(server.requests) == 3 and len(str(err.value)) < 800  # the body is cut


def test_client_error_is_not_retried(server):
    server.script = [(400, '{"error": "bad max_tokens"}')]
    with pytest.raises(TeacherError, match="not retried: HTTP 400.*bad max_tokens"):
        teacher(server).complete(convs(1), PARAMS)
    assert len(server.requests) == 1


def test_unexpected_reply_is_an_error(server):
    server.script = [(200, '{"choices": []}')]
    with pytest.raises(TeacherError, match="unexpected reply"):
        teacher(server).complete(convs(1), PARAMS)


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = OpenAITeacher(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.001)
    with pytest.raises(TeacherError, match="after 2 tries.*ConnectError"):
        t.complete(convs(1), PARAMS)


def test_concurrency_is_honoured(server):
    server.delay = 0.15
    out = teacher(server, concurrency=2).complete(convs(6), PARAMS, seeds=list(range(6)))
    assert out == [f"reply:q{i}" for i in range(6)]  # input order kept
    assert server.max_in_flight == 2


def test_make_teacher_reads_the_key_from_the_env(server, monkeypatch):
    cfg = TracesConfig(teacher="openai", model="m", base_url=server.base_url, api_key_env="GR2_TEST_KEY")
    monkeypatch.delenv("GR2_TEST_KEY", raising=False)
    with pytest.raises(TeacherError, match="GR2_TEST_KEY"):
        make_teacher(cfg)
    monkeypatch.setenv("GR2_TEST_KEY", "k123")
    t = make_teacher(cfg)
    t.complete(convs(1), PARAMS)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer k123"
