"""Fakes for the traces tests: synthetic examples and a scripted teacher that reads its prompts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
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
