"""Fakes for the traces tests: synthetic examples, a scripted teacher that reads its prompts, and
loopback OpenAI-compatible chat servers."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from gr2.prompts.render import ItemText
from gr2.traces.sampling import TraceExample, request_seed


def sid(i: int) -> str:
    return f"<s_a_{i % 7}><s_b_{i}><s_c_{(3 * i) % 11}><s_d_{i % 5}>"


def item(i: int) -> ItemText:
    return ItemText(i, sid(i), title=f"Product {i}", categories=("Beauty", f"Group {i % 3}"))


def examples(n: int = 3, k: int = 5, targets: Sequence[int] | None = None) -> list[TraceExample]:
    """Example ``ex{e}``: history items 100e.. (the first title names the example), candidates 100e+50..;
    target index ``targets[e]`` (default ``e % k``)."""
    out = []
    for e in range(n):
        hist = [ItemText(100 * e, sid(100 * e), title=f"history of ex{e}", categories=("Beauty",))]
        hist += [item(100 * e + j) for j in range(1, 3)]
        cands = [item(100 * e + 50 + j) for j in range(k)]
        t = targets[e] if targets is not None else e % k
        out.append(TraceExample(f"ex{e}", tuple(hist), tuple(cands), t))
    return out


def user_text(conversation) -> str:
    return next(m["content"] for m in conversation if m["role"] == "user")


def example_of(conversation) -> str:
    return re.search(r"history of (ex\d+)", user_text(conversation)).group(1)


def shown_sids(conversation) -> list[str]:
    """Candidate SIDs in the order the prompt shows them."""
    return re.findall(r"^\[\d+\] (\S+) \|", user_text(conversation), flags=re.MULTILINE)


def answer(ranked: Sequence[str], explanation: str = "History shows hair care; next is a styling step.") -> str:
    return json.dumps({"explanation": explanation, "recommendations": list(ranked)})


def attempt_of(example_id: str, seed: int, cfg_seed: int = 0) -> int:
    """The try a request seed belongs to (inverts :func:`request_seed`; also checks the seeds)."""
    return next(a for a in range(1, 50) if request_seed(cfg_seed, example_id, a) == seed)


Script = Callable[[str, int, list[str], list[dict]], str]
"""(example_id, attempt, shown SIDs, conversation) → answer."""


class ScriptedTeacher:
    """Answers with ``script``; records every request; raises once ``fail_after`` calls are done."""

    def __init__(self, script: Script, name: str = "scripted", fail_after: int | None = None):
        self.script = script
        self.name = name
        self.fail_after = fail_after
        self.asked: list[tuple[str, int]] = []  # (example id, attempt)
        self.conversations: list[list[dict]] = []
        self.params: list = []
        self.calls = 0

    def complete(self, conversations, params, seeds=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("teacher crashed")
        self.calls += 1
        self.params.append(params)
        out = []
        for c, s in zip(conversations, seeds):
            ex = example_of(c)
            attempt = attempt_of(ex, s)
            self.asked.append((ex, attempt))
            self.conversations.append(c)
            out.append(self.script(ex, attempt, shown_sids(c), c))
        return out


@pytest.fixture
def make_examples():
    return examples


@pytest.fixture
def scripted():
    return ScriptedTeacher


@pytest.fixture
def helpers():
    """Plain helper functions (conftest modules cannot be imported under importlib mode)."""
    return SimpleNamespace(sid=sid, item=item, answer=answer, shown_sids=shown_sids, user_text=user_text)


class ChatServer:
    """A chat-completions server on 127.0.0.1 (one thread per request, one connection per request).

    Records every request; answers from ``script`` (``(status, body)`` pairs consumed in order),
    then 200 with ``reply(request body)`` as the message (default ``reply:<last user message>``),
    after ``delay`` seconds. With ``fail_after = n`` it fails every request after its n-th the way
    ``fail_mode`` says: ``"500"`` answers HTTP 500, ``"close"`` closes the connection without an
    answer, ``"refused"`` does that and stops listening (connection refused from then on).
    """

    def __init__(self, reply: Callable[[dict], str] | None = None, fail_after: int | None = None,
                 fail_mode: str = "500", delay: float = 0.0):
        self.requests: list[dict] = []
        self.script: list[tuple[int, str]] = []
        self.reply = reply or (lambda body: "reply:" + body["messages"][-1]["content"])
        self.fail_after = fail_after
        self.fail_mode = fail_mode
        self.delay = delay
        self.answered = 0
        self.failed = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.closed = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    fail = outer.fail_after is not None and len(outer.requests) > outer.fail_after
                    status, text = (None, None) if fail else outer.script.pop(0) if outer.script else (200, None)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                with outer.lock:
                    outer.in_flight -= 1
                    outer.failed += fail
                    outer.answered += not fail and status == 200
                if fail and outer.fail_mode == "500":
                    status, text = 500, '{"error": "engine crashed"}'
                elif fail:  # no answer: the client sees the connection closed
                    self.close_connection = True
                    if outer.fail_mode == "refused":
                        threading.Thread(target=outer.close, daemon=True).start()
                    return
                if text is None:
                    msg = {"role": "assistant", "content": outer.reply(body)}
                    text = json.dumps({"id": "x", "object": "chat.completion",
                                       "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def requests_after_failing(self) -> int:
        """Requests received after its first failure (0 while it has not failed)."""
        return max(0, len(self.requests) - self.fail_after - 1) if self.fail_after is not None else 0

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_server():
    """``make_server(**kw)``: a started :class:`ChatServer`, closed after the test."""
    made: list[ChatServer] = []

    def make(**kw) -> ChatServer:
        made.append(ChatServer(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()
