"""Tests of the evidence-grounded teacher on a tiny synthetic beauty shop (a few seconds)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from gr2.data.splits import Split
from gr2.prompts.sids import render_sid
from gr2.rerank import LambdaMARTConfig
from gr2.runs import RunDir
from gr2.traces.evidence import (
    TEACHER_NAME,
    EvidenceTeacher,
    build_teacher,
)
from gr2.traces.facts import Claim, Facts, evidence_sequences, verify_claims

K = 10
SID_RUN = re.compile(r"(?:<s_[a-z]_\d+>)+")
CONFIG = LambdaMARTConfig(n_estimators=30, cv_folds=0, min_child_samples=5, num_threads=1)

# routines: (category path, product type) steps bought in this order
ROUTINES = [
    [(("Beauty", "Hair Care", "Shampoo & Conditioner", "Shampoo"), "volume shampoo"),
     (("Beauty", "Hair Care", "Shampoo & Conditioner", "Conditioner"), "volume conditioner"),
     (("Beauty", "Hair Care", "Styling Products", "Gel"), "styling gel")],
    [(("Beauty", "Skin Care", "Face", "Cleansers"), "foaming cleanser"),
     (("Beauty", "Skin Care", "Face", "Toners"), "rose toner"),
     (("Beauty", "Skin Care", "Face", "Moisturizers"), "daily moisturizer"),
     (("Beauty", "Skin Care", "Sun", "Sunscreen"), "sunscreen lotion")],
    [(("Beauty", "Makeup", "Nails", "Base Coat"), "nail base coat"),
     (("Beauty", "Makeup", "Nails", "Nail Polish"), "red nail polish"),
     (("Beauty", "Makeup", "Nails", "Top Coat"), "glossy nail top coat"),
     (("Beauty", "Tools & Accessories", "Nail Tools", "Remover"), "polish remover pads")],
]
BRANDS = ["Acme", "Lumi", "Verde"]
MYSTERY = ("Beauty", "Fragrance", "Unisex", "Perfume")


def _catalogue() -> tuple[pd.DataFrame, list[list[int]]]:
    """Items (3 brands of every routine step, plus one perfume bought once) and step -> item ids."""
    rows, steps = [], []
    for routine in ROUTINES:
        for path, kind in routine:
            steps.append([])
            for brand in BRANDS:
                steps[-1].append(len(rows))
                rows.append({"item_id": len(rows), "title": f"{brand} {kind} 8 oz", "categories": list(path),
                             "description": ""})
    rows.append({"item_id": len(rows), "title": "Mystery unisex perfume", "categories": list(MYSTERY),
                 "description": ""})
    return pd.DataFrame(rows), steps


def _sequences(steps: list[list[int]], n_users: int = 60, seed: int = 0) -> list[list[int]]:
    """Users walk through routines (mostly one brand). User 0 buys the perfume as its s[-3], right
    after its s[-4], and nobody else ever buys it: the only transition to it is the held-out one."""
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + [len(r) for r in ROUTINES])
    seqs = []
    for u in range(n_users):
        seq: list[int] = []
        brand = int(rng.integers(3))
        while len(seq) < int(rng.integers(6, 10)):
            r = int(rng.integers(len(ROUTINES)))
            for step in range(offsets[r], offsets[r + 1]):
                b = brand if rng.random() < 0.8 else int(rng.integers(3))
                item = steps[step][b]
                if item not in seq:
                    seq.append(item)
        seqs.append(seq)
    mystery = sum(len(s) for s in steps)
    seqs[0] = seqs[0][:-2] + [mystery] + seqs[0][-2:]
    return seqs


def _lists(seqs: list[list[int]], n_items: int, cut: int, name: str, seed: int) -> pd.DataFrame:
    """Hand-made candidate lists: target ``s[-cut]``, history before it, 9 unseen distractors."""
    rng = np.random.default_rng(seed)
    rows = []
    for u, s in enumerate(seqs):
        hist, target = s[:-cut], s[-cut]
        pool = [i for i in range(n_items) if i not in hist and i != target]
        cands = [int(i) for i in rng.choice(pool, size=K - 1, replace=False)]
        cands.insert(int(rng.integers(K)), target)
        rows.append({"example_id": f"{name}-{u}", "user_id": u, "history": hist, "candidates": cands,
                     "scores": sorted(rng.random(K).tolist(), reverse=True),
                     "labels": [int(c == target) for c in cands], "target": target, "split": name})
    return pd.DataFrame(rows)


def _sids(n_items: int) -> list[str]:
    return [render_sid((i % 4, i % 7, i)) for i in range(n_items)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run directory with data/, sid/ and candidates/val.parquet, the teacher built from it, and
    hand-made training lists (target s[-3])."""
    items, steps = _catalogue()
    seqs = _sequences(steps)
    n = len(items)
    run = RunDir(tmp_path_factory.mktemp("run"))
    run.stage_dir("data")
    items.to_parquet(run.path / "data" / "items.parquet")
    pd.DataFrame([{"user_id": u, "item_id": i, "position": p, "timestamp": float(p)}
                  for u, s in enumerate(seqs) for p, i in enumerate(s)]).to_parquet(
        run.path / "data" / "interactions.parquet")
    sids = _sids(n)
    pd.DataFrame({"item_id": np.arange(n), "codes": [[i % 4, i % 7, i] for i in range(n)], "sid": sids}
                 ).to_parquet(run.stage_dir("sid") / "sids.parquet")
    _lists(seqs, n, 2, "val", seed=1).to_parquet(run.stage_dir("candidates") / "val.parquet")
    teacher = EvidenceTeacher.from_run(run, "train", config=CONFIG)
    train = _lists(seqs, n, 3, "train", seed=2)
    return {"teacher": teacher, "train": train, "traces": teacher.explain_lists(train), "seqs": seqs,
            "items": items, "sids": sids}


def test_name_and_orders_are_permutations(world: dict) -> None:
    assert world["teacher"].name == TEACHER_NAME == "evidence (LambdaMART + data facts)"
    assert len(world["traces"]) == len(world["train"])
    for t in world["traces"]:
        assert sorted(t.order) == list(range(K))


def test_explanations_cite_only_list_items_and_stay_short(world: dict) -> None:
    sids = world["sids"]
    for t, (_, row) in zip(world["traces"], world["train"].iterrows()):
        allowed = {sids[i] for i in list(row["history"]) + list(row["candidates"])}
        cited = set(SID_RUN.findall(t.explanation))
        subjects = {s for c in t.claims for s in c.subjects}
        assert cited and cited <= allowed, t.explanation
        assert subjects <= allowed and cited <= subjects  # the prose says nothing the claims don't
        assert len(t.explanation.split()) < 150, t.explanation
        assert any(label in t.explanation for label in ("3.", "Step 3:", "Ranking:"))


def test_every_claim_verifies_and_all_kinds_occur(world: dict) -> None:
    teacher = world["teacher"]
    kinds = set()
    for t, (_, row) in zip(world["traces"], world["train"].iterrows()):
        assert t.claims
        assert verify_claims(t.claims, teacher.facts, teacher.shown(row["history"]), row["candidates"]) == []
        kinds |= {c.kind for c in t.claims}
        kinds |= {"transition>0" for c in t.claims if c.kind == "transition" and c.value > 0}
    assert kinds >= {"history_category", "latest_category", "next_category", "candidates_in_category",
                     "transition", "transition>0", "shared_category", "title_similarity", "popularity"}


def _tamper(claim: Claim, outsider: str) -> list[Claim]:
    """Wrong versions of a claim: changed values and a subject that is not in the list."""
    v = claim.value
    changed = {
        "history_category": lambda: [(v[0], v[1] + 1, v[2]), (v[0], v[1], v[2] + 1)],
        "latest_category": lambda: [(*v, "Extra")],
        "next_category": lambda: [(v[0], v[1] + 1, v[2]), (v[0], v[1], v[2] - 1)],
        "candidates_in_category": lambda: [(v[0], v[1] + 1)],
        "transition": lambda: [v + 1],
        "shared_category": lambda: [(*v, "Extra")] + ([v[:-1]] if len(v) > 1 else []),
        "title_similarity": lambda: [(round(v[0] + 0.1, 2), v[1])],
        "popularity": lambda: [v + 1],
    }[claim.kind]()
    return ([dataclasses.replace(claim, subjects=(outsider,) + claim.subjects[1:])]
            + [dataclasses.replace(claim, value=x) for x in changed])


def test_tampered_claims_are_caught(world: dict) -> None:
    teacher, sids = world["teacher"], world["sids"]
    checked = 0
    for t, (_, row) in zip(world["traces"][:20], world["train"].head(20).iterrows()):
        inside = set(row["history"]) | set(row["candidates"])
        outsider = sids[next(i for i in range(len(sids)) if i not in inside)]
        for j, claim in enumerate(t.claims):
            for bad in _tamper(claim, outsider):
                claims = t.claims[:j] + [bad] + t.claims[j + 1:]
                problems = verify_claims(claims, teacher.facts, teacher.shown(row["history"]),
                                         row["candidates"])
                assert len(problems) == 1, (claim, bad)
                checked += 1
    assert checked > 100
    # a transition claimed in the wrong direction, and a swapped title word
    row = world["train"].iloc[0]
    h, c = teacher.facts.sids[row["history"][-1]], teacher.facts.sids[row["candidates"][0]]
    assert verify_claims([Claim("transition", (c, h), 0)], teacher.facts, row["history"], row["candidates"])
    sim = next(cl for tr in world["traces"] for cl in tr.claims
               if cl.kind == "title_similarity" and cl.value[1])
    fake = dataclasses.replace(sim, value=(sim.value[0], ("perfume",)))
    cand, hist = (teacher.facts.sid_index[s] for s in sim.subjects)
    assert verify_claims([sim], teacher.facts, [hist], [cand]) == []
    assert "not in both titles" in " ".join(verify_claims([fake], teacher.facts, [hist], [cand]))


def test_no_followups_and_empty_history(world: dict) -> None:
    """The perfume has no follow-up in the evidence sequences: step 2 says so, checkably."""
    teacher, row = world["teacher"], world["train"].iloc[1]
    mystery, cands = len(world["items"]) - 1, list(row["candidates"])
    trace = teacher.explain([mystery], cands, "solo", row["scores"])
    kinds = [c.kind for c in trace.claims]
    assert "no_followups" in kinds and "latest_category" in kinds and "history_category" not in kinds
    assert verify_claims(trace.claims, teacher.facts, [mystery], cands) == []
    busy = next(i for i in cands if teacher.facts.follows.get(i))
    assert verify_claims([Claim("no_followups", (teacher.facts.sids[busy],), 0)], teacher.facts, [busy], cands)
    empty = teacher.explain([], cands, "new-user", row["scores"])
    assert sorted(empty.order) == list(range(K))
    assert {c.kind for c in empty.claims} <= {"popularity", "shared_category", "title_similarity"}
    assert verify_claims(empty.claims, teacher.facts, [], cands) == []


def test_training_target_is_never_counted(world: dict) -> None:
    """User 0's s[-4] -> s[-3] (the perfume) is the only transition to the perfume anywhere: the teacher
    must report 0 for it on user 0's training list, though Split.train contains it."""
    teacher, seqs, items = world["teacher"], world["seqs"], world["items"]
    mystery = len(items) - 1
    before = seqs[0][-4]
    assert seqs[0][-3] == mystery
    assert sum((a, b) == (before, mystery) for s in Split(seqs).train for a, b in zip(s, s[1:])) == 1
    assert teacher._pair(before, mystery) == 0 and teacher.features.pop[mystery] == 0
    row = world["train"].iloc[0]
    assert row["target"] == mystery and row["history"][-1] == before
    trace = world["traces"][0]
    facts = {(c.kind, c.subjects): c.value for c in trace.claims}
    sid = teacher.facts.sids
    assert facts.get(("transition", (sid[before], sid[mystery])), 0) == 0
    assert facts.get(("popularity", (sid[mystery],)), 0) == 0
    leak = Claim("transition", (sid[before], sid[mystery]), 1)
    assert verify_claims([leak], teacher.facts, row["history"], row["candidates"])
    # the features the ranker saw agree
    X, _, names = teacher.ranker.features.transform(world["train"].head(1))
    slot = list(row["candidates"]).index(mystery)
    assert X[slot, names.index("trans_last")] == 0 and X[slot, names.index("log_pop")] == 0
    assert evidence_sequences(Split(seqs), "train")[0] == seqs[0][:-3]


def test_deterministic_and_single_list_matches_batch(world: dict) -> None:
    train, first = world["train"].head(8), world["traces"][:8]
    again = world["teacher"].explain_lists(train)
    split = Split(world["seqs"])
    val = _lists(world["seqs"], len(world["items"]), 2, "val", seed=1)
    rebuilt = build_teacher(world["items"], world["sids"], evidence_sequences(split, "train"), val,
                            split.train, CONFIG).explain_lists(train)
    for a, b, c in zip(first, again, rebuilt):
        assert a == b == c
    row = train.iloc[3]
    one = world["teacher"].explain(row["history"], row["candidates"], row["example_id"], row["scores"])
    assert one == first[3]


def test_phrasing_varies_with_the_example_id(world: dict) -> None:
    teacher, row = world["teacher"], world["train"].iloc[5]
    traces = [teacher.explain(row["history"], row["candidates"], f"train-x{i}", row["scores"])
              for i in range(12)]
    assert len({t.explanation for t in traces}) > 3
    assert all(t.claims == traces[0].claims and t.order == traces[0].order for t in traces)


def test_mismatched_feature_builder_is_refused(world: dict) -> None:
    teacher = world["teacher"]
    val_facts = Facts.from_frames(world["items"], world["sids"], Split(world["seqs"]).train, teacher.features)
    with pytest.raises(ValueError, match="not fitted on facts.sequences"):
        EvidenceTeacher(teacher.ranker, val_facts)


def test_the_evidence_teacher_answers_only_lists_at_each_users_newest_training_position():
    import pandas as pd

    from gr2.data.splits import Split
    from gr2.traces.facts import evidence_sequences, newest_position_lists

    split = Split([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]])  # training sequences [0..3] and [6, 7]
    lists = pd.DataFrame({"example_id": ["train-0-3", "train-0-2", "train-1-1"], "user_id": [0, 0, 1],
                          "position": [3, 2, 1], "target": [3, 2, 7]})
    kept = newest_position_lists(lists, split)
    assert list(kept["example_id"]) == ["train-0-3", "train-1-1"]
    statistics = evidence_sequences(split, "train")
    # the kept lists' targets are outside the teacher's statistics; the dropped one's is inside
    assert all(t not in statistics[u] for u, t in zip(kept["user_id"], kept["target"]))
    assert 2 in statistics[0]
    assert newest_position_lists(lists.drop(columns="position"), split).equals(lists.drop(columns="position"))


def test_with_the_think_format_the_three_steps_are_tagged_blocks(world: dict) -> None:
    """reasoning_format="think": the same claims and order, written as the three tagged steps the
    parser checks, inside the JSON the prompt asks for."""
    from types import SimpleNamespace

    from gr2.prompts.parse import parse_output
    from gr2.prompts.think import STEP_TAGS, parse_steps

    teacher, train = world["teacher"], world["train"]
    think = teacher.explain_lists(train, think=True)
    for free, tagged, (_, row) in zip(world["traces"], think, train.iterrows()):
        assert tagged.order == free.order and tagged.claims == free.claims
        parsed = parse_steps(tagged.explanation)
        assert parsed.status == "ok", tagged.explanation
        assert not any(f"<{t}>" in free.explanation for t in STEP_TAGS)
        assert set(SID_RUN.findall(tagged.explanation)) == set(SID_RUN.findall(free.explanation))
    empty = teacher.explain([], list(train.iloc[1]["candidates"]), "new-user", train.iloc[1]["scores"], think=True)
    assert parse_steps(empty.explanation).status == "ok"

    row = train.iloc[0]
    sids = world["sids"]
    example = SimpleNamespace(history=[SimpleNamespace(item_id=i) for i in row["history"]],
                              candidates=[SimpleNamespace(item_id=i) for i in row["candidates"]],
                              example_id=row["example_id"])
    cand_sids = [sids[i] for i in row["candidates"]]
    for fmt, status in (("think", "ok"), ("free", "missing_step")):
        prompt = SimpleNamespace(candidate_sids=cand_sids, reasoning=True, reasoning_format=fmt)
        (text,) = teacher.answer_examples([example], [prompt])
        parsed = parse_output(text, cand_sids, reasoning_format="think")
        assert parsed.ok and parsed.steps_status == status
