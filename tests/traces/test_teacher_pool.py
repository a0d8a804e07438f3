"""OpenAITeacher over a pool of loopback chat servers: balancing, failover when one server fails
mid-run, one error when every server is down, and the sample store staying exact through it all."""

from __future__ import annotations

import json
import time

import pytest

from gr2.checks import ConfigError
from gr2.config import load_config
from gr2.llm.generate import GenerationParams
from gr2.traces.config import TracesConfig
from gr2.traces.sampling import request_seed, sample_traces
from gr2.traces.store import TraceStore
from gr2.traces.teachers import OpenAITeacher, TeacherError, make_teacher

STABLE = ("example_id", "attempt", "presented", "text", "status", "order", "repaired", "accepted",
          "ranking", "forced", "params", "key", "teacher")
PARAMS = GenerationParams(max_new_tokens=33, temperature=0.7, top_p=0.9, seed=5)


def convs(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


@pytest.fixture
def replica(helpers):
    """What every server of the pool answers (the same model): the candidates in the order shown,
    the request's seed in the explanation, so a record shows which request it answers."""
    def reply(body: dict) -> str:
        return helpers.answer(helpers.shown_sids(body["messages"]), explanation=f"seed {body['seed']}")
    return reply


def pool(servers, **kw) -> OpenAITeacher:
    kw = {"backoff_s": 0.005, "backoff_max_s": 0.02, "max_retries": 3, "concurrency": 4, **kw}
    return OpenAITeacher([s.base_url for s in servers], "tiny-teacher", **kw)


def check_records(records, examples, cfg) -> None:
    """Exactly one record per example (try 1), each the answer to its own request."""
    assert sorted(r["example_id"] for r in records) == sorted(e.example_id for e in examples)
    for r in records:
        seed = request_seed(cfg.seed, r["example_id"], 1)
        assert r["attempt"] == 1 and r["params"]["seed"] == seed
        assert json.loads(r["text"])["explanation"] == f"seed {seed}" and r["status"] == "ok"


def test_sequential_requests_go_round_robin(make_server):
    servers = [make_server() for _ in range(3)]
    t = pool(servers, concurrency=1)
    assert t.complete(convs(9), PARAMS) == [f"reply:q{i}" for i in range(9)]
    assert [len(s.requests) for s in servers] == [3, 3, 3]
    assert [s["answered"] for s in t.server_stats()] == [3, 3, 3]
    t.close()


def test_concurrent_requests_go_to_the_least_busy_server(make_server):
    servers = [make_server(delay=0.03) for _ in range(3)]
    t = pool(servers, concurrency=6)
    assert t.complete(convs(36), PARAMS, seeds=list(range(36))) == [f"reply:q{i}" for i in range(36)]
    assert sum(len(s.requests) for s in servers) == 36
    assert all(len(s.requests) >= 8 for s in servers), [len(s.requests) for s in servers]  # ~12 each
    assert all(s.max_in_flight <= 3 for s in servers)  # 6 in flight over 3 servers: never piled on one
    t.close()


@pytest.mark.parametrize("fail_mode", ["500", "close", "refused"])
def test_a_server_that_fails_mid_run_is_left_out_and_no_sample_is_lost(tmp_path, make_server, make_examples,
                                                                        replica, fail_mode):
    good = [make_server(reply=replica, delay=0.005) for _ in range(2)]
    bad = make_server(reply=replica, delay=0.005, fail_after=5, fail_mode=fail_mode)
    exs = make_examples(48, k=5)
    cfg = TracesConfig(teacher="openai", attempts=1, batch_size=8, concurrency=4)
    # down for 30 s after its failure: longer than the test, so it is never probed again here
    teacher = pool([good[0], bad, good[1]], concurrency=4, backoff_s=30.0, backoff_max_s=30.0)
    store = TraceStore(tmp_path / "samples.jsonl")
    records = sample_traces(teacher, exs, cfg, store)

    check_records(records, exs, cfg)
    check_records(list(TraceStore(tmp_path / "samples.jsonl")), exs, cfg)  # the file, read back
    assert bad.answered == 5 and bad.failed >= 1
    # once it failed, it only got the requests already on their way (at most one per worker)
    assert bad.requests_after_failing <= cfg.concurrency - 1
    assert all(s.answered >= 15 for s in good), [s.answered for s in good]  # the rest, shared
    assert sum(s.answered for s in [*good, bad]) == len(exs)  # every answer used once, none wasted
    stats = teacher.server_stats()
    assert [s["down"] for s in stats] == [False, True, False]
    assert stats[1]["last_error"].startswith("HTTP 500" if fail_mode == "500" else
                                             ("RemoteProtocolError", "ConnectError", "ReadError"))
    teacher.close()


def test_every_server_down_is_one_error_naming_each(make_server):
    crashed = make_server(fail_after=0, fail_mode="500")
    hung_up = make_server(fail_after=0, fail_mode="close")
    t = pool([crashed, hung_up], max_retries=3)
    with pytest.raises(TeacherError) as err:
        t.complete(convs(4), PARAMS)
    msg = str(err.value)
    assert "failed after 4 tries; every teacher server is down" in msg
    assert f"{crashed.base_url} (down, 0 answered" in msg and "HTTP 500: {\"error\": \"engine crashed\"}" in msg
    assert f"{hung_up.base_url} (down, 0 answered" in msg and "RemoteProtocolError" in msg
    assert "\n" not in msg and len(msg) < 1200
    t.close()


def test_a_bad_request_is_not_retried_on_another_server(make_server):
    first, second = make_server(), make_server()
    first.script = [(400, '{"error": "max_tokens too large"}')]
    t = pool([first, second], concurrency=1)
    with pytest.raises(TeacherError, match="not retried: HTTP 400.*max_tokens too large"):
        t.complete(convs(1), PARAMS)
    assert len(first.requests) == 1 and second.requests == []
    assert not any(s["down"] for s in t.server_stats())  # the server is fine; the request is not
    t.close()


def test_a_request_waits_for_a_server_to_come_back(make_server):
    """One server, failing twice: the request waits out each down period (plain backoff)."""
    s = make_server()
    s.script = [(503, "busy"), (503, "busy")]
    t = pool([s], backoff_s=0.05, backoff_max_s=1.0)
    assert t.complete(convs(1), PARAMS) == ["reply:q0"]
    assert len(s.requests) == 3 and t.server_stats()[0]["answered"] == 1


def test_a_server_is_asked_again_after_its_down_period(make_server):
    flaky, steady = make_server(), make_server()
    flaky.script = [(502, "bad gateway")]
    t = pool([flaky, steady], concurrency=1, backoff_s=0.05)
    assert t.complete(convs(1), PARAMS) == ["reply:q0"]  # flaky first (round-robin), then steady
    assert [len(flaky.requests), len(steady.requests)] == [1, 1] and t.server_stats()[0]["down"]
    time.sleep(0.1)
    assert t.complete(convs(2), PARAMS) == ["reply:q0", "reply:q1"]
    assert [len(flaky.requests), len(steady.requests)] == [2, 2]
    assert not t.server_stats()[0]["down"]  # its answer ends its failure streak
    t.close()


@pytest.mark.parametrize("stop", ["servers_down", "interrupt"])
def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_samples(tmp_path, make_server, make_examples,
                                                                     replica, stop):
    exs = make_examples(24, k=5)
    cfg = TracesConfig(teacher="openai", attempts=1, batch_size=4, concurrency=2)
    reference = sample_traces(pool([make_server(reply=replica)], concurrency=2), exs, cfg,
                              TraceStore(tmp_path / "reference.jsonl"))

    path = tmp_path / "samples.jsonl"
    if stop == "servers_down":  # both die after 13 answers in all: 3 batches stored, 1 answer lost
        servers = [make_server(reply=replica, fail_after=7), make_server(reply=replica, fail_after=6)]
        with pytest.raises(TeacherError, match="every teacher server is down"):
            sample_traces(pool(servers, concurrency=2), exs, cfg, TraceStore(path))
        for s in servers:  # the servers come back
            s.fail_after = None
    else:  # the process is interrupted during the teacher call of the 4th batch
        servers = [make_server(reply=replica), make_server(reply=replica)]

        class Killed(OpenAITeacher):
            calls = 0

            def complete(self, *a, **kw):
                self.calls += 1
                if self.calls == 4:
                    super().complete(*a, **kw)  # answered, but killed before the store got them
                    raise KeyboardInterrupt
                return super().complete(*a, **kw)

        killed = Killed([s.base_url for s in servers], "tiny-teacher", concurrency=2)
        with pytest.raises(KeyboardInterrupt):
            sample_traces(killed, exs, cfg, TraceStore(path))
    first = TraceStore(path)
    assert len(first) == 12 and len(first.done) == 12  # whole batches only
    asked_before = sum(s.answered for s in servers)

    resumed = sample_traces(pool(servers, concurrency=2), exs, cfg, TraceStore(path))
    assert sum(s.answered for s in servers) - asked_before == len(exs) - 12  # nothing asked twice
    final = TraceStore(path)
    assert len(final) == len(exs) and len(path.read_text().splitlines()) == len(exs)
    check_records(list(final), exs, cfg)
    want = {(r["example_id"], r["attempt"]): {k: r[k] for k in STABLE} for r in reference}
    assert {(r["example_id"], r["attempt"]): {k: r[k] for k in STABLE} for r in resumed} == want


# -- configuration -----------------------------------------------------------------------------

def test_the_pool_comes_from_base_urls_else_base_url():
    assert TracesConfig().servers == ["http://127.0.0.1:8000/v1"]
    assert TracesConfig(base_url="https://teacher.example/v1").servers == ["https://teacher.example/v1"]
    urls = ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert TracesConfig(base_urls=urls).servers == urls
    assert TracesConfig(base_urls=urls, base_url=urls[1]).servers == urls  # base_url may be one of them
    cfg = load_config(None, ["traces.base_urls=[http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]"]).traces
    assert cfg.servers == urls


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["traces.base_urls=[ftp://a/v1]"], r"traces: base_url/base_urls must be http\(s\)://host"),
        (["traces.base_urls=[http://a:8000/v1, http://a:8000/v1/]"], "base_urls lists a server twice"),
        (["traces.base_urls=[http://a:8000/v1]", "traces.base_url=http://b:8000/v1"],
         "base_url 'http://b:8000/v1' is not in base_urls"),
        (["traces.base_urls=http://a:8000/v1"], "traces.base_urls: expected a list"),
        (["traces.base_urls=[8000]"], r"traces.base_urls\[0\]: expected str"),
        (["traces.base_url=localhost:8000"], "must be http"),
        (["traces.base_url=http://a:99999/v1"], "must be http"),
        (["traces.base_url=http://a b/v1"], "must be http"),
        (["traces.backoff_s=-1"], "backoff_s must be >= 0, got -1"),
        (["traces.backoff_max_s=.nan"], "backoff_max_s must be >= 0, got nan"),
    ],
)
def test_bad_server_settings_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_make_teacher_builds_the_pool(make_server):
    servers = [make_server(), make_server()]
    t = make_teacher(TracesConfig(teacher="openai", model="m", base_urls=[s.base_url for s in servers],
                                  concurrency=1))
    assert [s["url"] for s in t.server_stats()] == [s.base_url for s in servers]
    t.complete(convs(2), PARAMS)
    assert [len(s.requests) for s in servers] == [1, 1]
    t.close()
