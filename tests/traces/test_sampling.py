from __future__ import annotations

import json

import pytest

from gr2.prompts.render import PromptConfig, build_messages, presentation_order
from gr2.traces.config import TracesConfig
from gr2.traces.sampling import request_seed, sample_traces, sft_example
from gr2.traces.stats import trace_stats
from gr2.traces.store import TraceStore

STABLE = ("example_id", "attempt", "presented", "text", "status", "order", "repaired", "accepted",
          "ranking", "forced", "params", "key")


@pytest.fixture
def rejection_case(make_examples, helpers):
    """ex0: target first at once; ex1: target last on try 1, first on try 2; ex2: never readable."""
    exs = make_examples(3, k=5, targets=[0, 2, 4])
    target = {e.example_id: e.candidates[e.target_index].sid for e in exs}

    def script(ex, attempt, shown, conv):
        if ex == "ex2":
            return "I would pick candidate 3, it looks nice."
        rest = [s for s in shown if s != target[ex]]
        if ex == "ex0" or attempt >= 2:
            return helpers.answer([target[ex], *rest])
        return helpers.answer([*rest, target[ex]])

    return exs, script


def test_rejection_records_and_stats(tmp_path, rejection_case, scripted):
    exs, script = rejection_case
    cfg = TracesConfig(attempts=4, batch_size=2, temperature=0.7, top_p=0.9, max_new_tokens=64)
    teacher = scripted(script)
    store = TraceStore(tmp_path / "s.jsonl")
    records = sample_traces(teacher, exs, cfg, store)

    keys = [(r["example_id"], r["attempt"]) for r in records]
    assert keys == [("ex0", 1), ("ex1", 1), ("ex1", 2), ("ex2", 1), ("ex2", 2), ("ex2", 3), ("ex2", 4)]
    # round by round, batches of 2: [ex0, ex1], [ex2] | [ex1, ex2] | [ex2] | [ex2]
    assert teacher.asked == [("ex0", 1), ("ex1", 1), ("ex2", 1), ("ex1", 2), ("ex2", 2), ("ex2", 3), ("ex2", 4)]
    assert teacher.calls == 5
    assert [r["accepted"] for r in records] == [True, False, True, False, False, False, False]
    assert [r["status"] for r in records] == ["ok"] * 3 + ["wrong_format"] * 4
    for r in records:
        ex = exs[int(r["example_id"][2])]
        assert r["presented"] == presentation_order(5, cfg.prompt, f"{r['example_id']}:{r['attempt']}")
        assert r["params"] == {"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "top_k": 0,
                               "repetition_penalty": 1.0,
                               "seed": request_seed(0, r["example_id"], r["attempt"])}
        assert r["target_index"] == ex.target_index and r["mode"] == "rejection" and r["teacher"] == "scripted"
        assert r["forced"] is False
        assert (r["ranking"] is not None) == r["accepted"]
    ex1_try1, ex1_try2 = records[1], records[2]
    assert ex1_try1["repaired"][-1] == 2 and ex1_try1["order"] == ex1_try1["repaired"]
    assert ex1_try2["ranking"][0] == 2 and ex1_try2["explanation"].startswith("History")
    assert ex1_try1["presented"] != ex1_try2["presented"]  # each try has its own presentation
    assert records[3]["order"] is None and records[3]["explanation"] is None

    acc = trace_stats(records)["acceptance"]
    assert acc["examples"] == 3 and acc["accepted"] == 2 and acc["rate"] == pytest.approx(2 / 3)
    assert acc["by_attempt"] == [
        {"attempt": 1, "tried": 3, "accepted": 1, "rate": pytest.approx(1 / 3), "cumulative": pytest.approx(1 / 3)},
        {"attempt": 2, "tried": 2, "accepted": 1, "rate": 0.5, "cumulative": pytest.approx(2 / 3)},
        {"attempt": 3, "tried": 1, "accepted": 0, "rate": 0.0, "cumulative": pytest.approx(2 / 3)},
        {"attempt": 4, "tried": 1, "accepted": 0, "rate": 0.0, "cumulative": pytest.approx(2 / 3)},
    ]


def test_resume_never_repeats_a_call(tmp_path, rejection_case, scripted):
    exs, script = rejection_case
    cfg = TracesConfig(attempts=4, batch_size=2)
    path = tmp_path / "s.jsonl"
    crashing = scripted(script, fail_after=2)  # dies at the first call of try 2
    with pytest.raises(RuntimeError, match="crashed"):
        sample_traces(crashing, exs, cfg, TraceStore(path))
    assert TraceStore(path).done == {("ex0", 1), ("ex1", 1), ("ex2", 1)}

    resumed = scripted(script)
    records = sample_traces(resumed, exs, cfg, TraceStore(path))
    assert resumed.asked == [("ex1", 2), ("ex2", 2), ("ex2", 3), ("ex2", 4)]
    assert not set(crashing.asked) & set(resumed.asked)

    reference = sample_traces(scripted(script), exs, cfg, TraceStore(tmp_path / "ref.jsonl"))
    assert [{k: r[k] for k in STABLE} for r in records] == [{k: r[k] for k in STABLE} for r in reference]

    idle = scripted(script)
    assert len(sample_traces(idle, exs, cfg, TraceStore(path))) == 7 and idle.calls == 0
    more = scripted(script)  # more tries extend the finished run; accepted examples are left alone
    sample_traces(more, exs, TracesConfig(attempts=5, batch_size=2), TraceStore(path))
    assert more.asked == [("ex2", 5)]


def test_store_from_another_config_is_refused(tmp_path, rejection_case, scripted):
    exs, script = rejection_case
    path = tmp_path / "s.jsonl"
    sample_traces(scripted(script), exs, TracesConfig(attempts=1), TraceStore(path))
    with pytest.raises(ValueError, match="another sampling config"):
        sample_traces(scripted(script), exs, TracesConfig(attempts=1, temperature=0.3), TraceStore(path))
    with pytest.raises(ValueError, match="another sampling config"):
        sample_traces(scripted(script, name="other"), exs, TracesConfig(attempts=1), TraceStore(path))


@pytest.mark.parametrize("accept, accepted", [("top1", True), ("top1_valid", False)])
def test_repaired_answers_and_top1_valid(tmp_path, make_examples, scripted, helpers, accept, accepted):
    ex = make_examples(1, k=4, targets=[1])
    target = ex[0].candidates[1].sid

    def script(e, attempt, shown, conv):  # target first, then a duplicate and one candidate left out
        return helpers.answer([target, target, *[s for s in shown if s != target][:2]])

    (r,) = sample_traces(scripted(script), ex, TracesConfig(attempts=1, accept=accept), TraceStore(tmp_path / "s"))
    assert r["status"] == "duplicate" and r["n_duplicates"] == 1 and r["n_missing"] == 1
    assert r["accepted"] is accepted
    if accepted:
        assert r["ranking"] == r["repaired"] and sorted(r["ranking"]) == [0, 1, 2, 3]


def test_targeted_forces_the_target_first(tmp_path, make_examples, scripted, helpers):
    exs = make_examples(3, k=5, targets=[1, 3, 0])
    tsid = {e.example_id: e.candidates[e.target_index].sid for e in exs}

    def script(ex, attempt, shown, conv):
        if ex == "ex2":
            return "no JSON here"
        return helpers.answer([*[s for s in shown if s != tsid[ex]], tsid[ex]])  # target last

    teacher = scripted(script)
    cfg = TracesConfig(mode="targeted", attempts=4, batch_size=8)
    records = sample_traces(teacher, exs, cfg, TraceStore(tmp_path / "s.jsonl"))
    assert [(r["example_id"], r["attempt"]) for r in records] == [("ex0", 1), ("ex1", 1), ("ex2", 1)]
    assert teacher.calls == 1  # one pass whatever ``attempts`` says
    for ex, r, conv in zip(exs, records, teacher.conversations):
        n = r["presented"].index(ex.target_index) + 1
        assert (f"the item the user actually bought next is {tsid[ex.example_id]} (candidate [{n}])"
                in helpers.user_text(conv))
    r0, r1, r2 = records
    assert r0["accepted"] and r0["forced"] and r0["repaired"][-1] == 1
    assert r0["ranking"] == [1] + [i for i in r0["repaired"] if i != 1]
    assert r1["accepted"] and r1["ranking"][0] == 3
    assert not r2["accepted"] and r2["ranking"] is None and not r2["forced"]
    assert trace_stats(records)["forced"] == 2

    sft = sft_example(exs[0], r0, cfg.prompt)
    assert sft["messages"] == build_messages(exs[0].history, exs[0].candidates, cfg.prompt, rng_key="ex0:1").messages
    assert "actually bought" not in sft["messages"][1]["content"]  # the student never sees the reveal
    body = json.loads(sft["completion"])
    assert body["recommendations"][0] == tsid["ex0"] and len(body["recommendations"]) == 5
    assert body["explanation"] == r0["explanation"]
    with pytest.raises(ValueError, match="not accepted"):
        sft_example(exs[2], r2, cfg.prompt)
    with pytest.raises(ValueError, match="presentation differs"):
        sft_example(exs[0], r0, PromptConfig(seed=1))


def test_ranking_only_prompts(tmp_path, make_examples, scripted):
    ex = make_examples(1, k=3, targets=[2])
    cfg = TracesConfig(attempts=1, prompt=PromptConfig(reasoning=False, order="prerank"))

    def script(e, attempt, shown, conv):
        return json.dumps({"recommendations": [shown[2], shown[0], shown[1]]})

    (r,) = sample_traces(scripted(script), ex, cfg, TraceStore(tmp_path / "s"))
    assert r["accepted"] and r["ranking"] == [2, 0, 1] and r["presented"] == [0, 1, 2]
    assert json.loads(sft_example(ex[0], r, cfg.prompt)["completion"]) == {
        "recommendations": [ex[0].candidates[i].sid for i in (2, 0, 1)]}


def test_config_validation(make_examples):
    with pytest.raises(ValueError, match="attempts"):
        TracesConfig(attempts=0)
    with pytest.raises(ValueError, match="mode"):
        TracesConfig(mode="greedy")
    assert TracesConfig(prompt={"order": "prerank"}).prompt.order == "prerank"
    assert TracesConfig(mode="targeted").max_attempts == 1
    twice = make_examples(1) * 2
    with pytest.raises(ValueError, match="unique"):
        sample_traces(None, twice, TracesConfig(), None)


def test_think_prompts_accept_only_answers_with_the_three_steps(tmp_path, make_examples, scripted, helpers):
    """reasoning_format="think": a teacher answer whose explanation is not the three tagged steps is not
    accepted (SFT would teach another format); one that is becomes an SFT example in that format."""
    from gr2.prompts.think import steps_text

    exs = make_examples(2, k=3, targets=[0, 0])
    good = steps_text(["hair care", "a conditioner and two gels", "the conditioner fits best"], sep=" ")

    def script(e, attempt, shown, conv):
        target = next(x for x in exs if x.example_id == e).candidates[0].sid
        ranked = [target, *[s for s in shown if s != target]]
        return helpers.answer(ranked, good if e == "ex0" else "History shows hair care.")

    cfg = TracesConfig(attempts=1, prompt=PromptConfig(reasoning_format="think"))
    teacher = scripted(script)
    r0, r1 = sample_traces(teacher, exs, cfg, TraceStore(tmp_path / "s"))
    assert "<user_interests>" in teacher.conversations[0][0]["content"], "the teacher is asked for the steps"
    assert r0["status"] == r1["status"] == "ok"
    assert r0["accepted"] and not r1["accepted"]
    assert json.loads(sft_example(exs[0], r0, cfg.prompt)["completion"])["explanation"] == good


def test_the_sampling_key_of_free_text_prompts_is_the_one_before_reasoning_format():
    import dataclasses
    import hashlib

    from gr2.traces.sampling import sampling_key

    cfg = TracesConfig()
    prompt = dataclasses.asdict(cfg.prompt)
    del prompt["reasoning_format"]
    payload = {"teacher": "t", "mode": cfg.mode, "accept": cfg.accept, "temperature": cfg.temperature,
               "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
               "extra_body": cfg.extra_body, "prompt": prompt}
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert sampling_key(cfg, "t") == before, "stores sampled before the field existed still match"
    think = TracesConfig(prompt=PromptConfig(reasoning_format="think"))
    assert sampling_key(think, "t") != before
