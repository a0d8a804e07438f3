"""The Python serving API on the tiny run: modes, flags, validation, cold start, model discovery."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gr2.serve import reranker as reranker_mod
from gr2.serve.catalogue import Item
from gr2.llm.scoring import PrefixCache, score_direct
from gr2.serve.reranker import RequestError, Reranker, find_model

from .conftest import N_ITEMS, build_run, raw_id

HIST = [raw_id(i) for i in (0, 1, 2)]
CANDS = [raw_id(i) for i in (3, 4, 5, 6, 7)]


def _naive_scores(model, ids: list[int], paths: list[list[int]]) -> list[float]:
    out = []
    with torch.no_grad():
        for p in paths:
            lp = torch.log_softmax(model(input_ids=torch.tensor([ids + p])).logits[0].float(), -1)
            out.append(sum(float(lp[len(ids) - 1 + i, t]) for i, t in enumerate(p)))
    return out


def test_direct_mode_scores_every_candidate_in_one_pass(reranker: Reranker) -> None:
    res = reranker.rerank(HIST, CANDS, mode="direct", timeout=30)
    assert sorted(res.order) == sorted(CANDS) and [CANDS[i] for i in res.indices] == res.order
    assert res.valid and not res.repaired and not res.fallback and res.fallback_reason is None
    assert res.scores is not None and res.scores == sorted(res.scores, reverse=True)
    # the one-pass tree scores equal per-candidate full forward passes
    x = reranker.score_input(HIST, CANDS)
    ref = _naive_scores(reranker.model, x.ids, x.paths)
    assert [ref[i] for i in res.indices] == pytest.approx(res.scores, abs=1e-4)


def test_tree_scoring_batched_with_and_without_prefix_cache(reranker: Reranker) -> None:
    """Padded rows of different lengths, with and without the cached prefix, match naive scoring."""
    inputs = [reranker.score_input(h, c)
              for h, c in ((HIST, CANDS), ([raw_id(9)], [raw_id(i) for i in (10, 11, 0)]), ([], CANDS[:2]))]
    ref = [_naive_scores(reranker.model, x.ids, x.paths) for x in inputs]
    prefix = reranker.prefixes["direct"]
    assert all(prefix.matches(x.ids) for x in inputs)
    for prefix in (None, prefix):
        got = score_direct(reranker.model, inputs, prefix)
        for g, r in zip(got, ref):
            assert g == pytest.approx(r, abs=1e-4)


def test_prefix_cache_is_not_modified_by_scoring(reranker: Reranker) -> None:
    for mode, cache in reranker.prefixes.items():
        before = [k.clone() for k, _ in cache.layers]
        reranker.rerank(HIST, CANDS, mode=mode)
        assert all(torch.equal(a, k) for a, (k, _) in zip(before, cache.layers))
        assert isinstance(cache, PrefixCache) and len(cache) > 50  # the system message


def test_reasoning_mode_on_a_garbage_model_returns_a_flagged_permutation(reranker: Reranker) -> None:
    res = reranker.rerank(HIST, CANDS, mode="reasoning", timeout=60)
    assert sorted(res.order) == sorted(CANDS)
    assert res.scores is None and isinstance(res.reasoning, str)
    assert sum([res.valid, res.repaired, res.fallback]) == 1
    assert not res.valid  # a random tiny llama does not write a valid ranking
    if res.fallback:
        assert res.fallback_reason == "unparseable" and res.order == CANDS


@pytest.mark.parametrize("answer, flags", [
    ("valid", (True, False, False)),
    ("partial", (False, True, False)),
    ("garbage", (False, False, True)),
])
def test_reasoning_answers_are_validated_and_repaired(reranker: Reranker, monkeypatch: pytest.MonkeyPatch,
                                                      answer: str, flags: tuple[bool, bool, bool]) -> None:
    sids = {r: reranker.catalogue.get(r).sid for r in CANDS}
    want = list(reversed(CANDS))
    texts = {
        "valid": '{"explanation": "e", "recommendations": [%s]}' % ", ".join(f'"{sids[c]}"' for c in want),
        "partial": '{"explanation": "e", "recommendations": ["%s", "%s", "%s"]}' % (sids[want[0]], sids[want[0]],
                                                                                  "<s_a_9>"),
        "garbage": "I like turtles",
    }
    monkeypatch.setattr(reranker_mod, "generate_answers", lambda model, tok, prompts, *a: [texts[answer]] * len(prompts))
    res = reranker.rerank(HIST, CANDS, mode="reasoning")
    assert (res.valid, res.repaired, res.fallback) == flags
    if answer == "valid":
        assert res.order == want and res.reasoning == "e"
    elif answer == "partial":  # first the recognised one, then the missing ones in input order
        assert res.order == [want[0]] + [c for c in CANDS if c != want[0]]
    else:
        assert res.order == CANDS and res.fallback_reason == "unparseable" and res.reasoning == "I like turtles"


def test_validation_errors_are_collected_with_locations(reranker: Reranker) -> None:
    with pytest.raises(RequestError) as e:
        reranker.rerank(["nope"] + HIST, [CANDS[0], CANDS[1], CANDS[0], "missing"], mode="direct")
    locs = {loc: msg for loc, msg in e.value.errors}
    assert "unknown item id 'nope'" in locs[("history", 0)]
    assert "duplicate candidate 'B003' (also at position 0)" in locs[("candidates", 2)]
    assert "unknown item id 'missing'" in locs[("candidates", 3)]
    with pytest.raises(RequestError, match="K must be between 2 and 50"):
        reranker.rerank(HIST, CANDS[:1])
    with pytest.raises(RequestError, match="201 items; at most 200"):
        reranker.rerank([raw_id(0)] * 201, CANDS)
    with pytest.raises(RequestError, match="mode: must be one of"):
        reranker.rerank(HIST, CANDS, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="timeout"):
        reranker.rerank(HIST, CANDS, timeout=0)


def test_cold_start_items_get_new_stable_sids(reranker: Reranker) -> None:
    known = {reranker.catalogue.get(raw_id(i)).sid for i in range(N_ITEMS)}
    new = [Item("NEW-1", "Argan oil shampoo", ("Beauty", "Hair Care")), Item("NEW-2", "Nail polish", ("Beauty",))]
    res = reranker.rerank([new[1]], [CANDS[0], new[0], "NEW-2"], mode="direct")  # a plain id may name an inline item
    assert sorted(res.order) == sorted([CANDS[0], "NEW-1", "NEW-2"]) and res.valid
    sids = [reranker.catalogue.get(n.id).sid for n in new]
    assert len(set(sids)) == 2 and not set(sids) & known
    assert {reranker.catalogue.get(raw_id(i)).sid for i in range(N_ITEMS)} == known  # existing SIDs unchanged
    reranker.rerank(HIST, [CANDS[0], Item("NEW-1", "different text")])
    assert reranker.catalogue.get("NEW-1").sid == sids[0]  # stable for the life of the process
    # an inline item with a catalogue id is the catalogue's item
    assert reranker.rerank(HIST, [Item(CANDS[0], "ignored"), CANDS[1]]).valid


def test_cold_start_without_a_sid_tokenizer_is_a_request_error(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", with_tokenizer=False)
    with Reranker.load(run) as rr:
        with pytest.raises(RequestError, match="cannot assign SIDs") as e:
            rr.rerank(HIST, [CANDS[0], Item("NEW-9", "a new thing")])
        assert [loc for loc, _ in e.value.errors] == [("candidates", 1)]


def test_find_model_prefers_the_latest_stage(tmp_path: Path) -> None:
    for stage in ("midtrain", "sft"):
        (tmp_path / stage / "model").mkdir(parents=True)
        (tmp_path / stage / "model" / "config.json").write_text("{}")
    assert find_model(tmp_path) == (tmp_path / "sft" / "model", "sft")
    assert find_model(tmp_path, "midtrain") == (tmp_path / "midtrain" / "model", "midtrain")
    with pytest.raises(FileNotFoundError, match="rl/model"):
        find_model(tmp_path, "rl")


def test_bare_model_folder_needs_items_and_sids(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="items= and sids="):
        Reranker.load(run_dir / "midtrain" / "model")
    with Reranker.load(run_dir / "midtrain" / "model", items=run_dir / "data" / "items.parquet",
                       sids=run_dir / "sid" / "sids.parquet") as rr:
        assert rr.rerank(HIST, CANDS).valid


def test_a_position_prior_saved_with_the_model_is_added_in_the_order_shown(run_dir: Path, tmp_path: Path,
                                                                            reranker: Reranker) -> None:
    import dataclasses
    import shutil

    from gr2.llm.scoring import PositionPrior

    folder = tmp_path / "model"
    shutil.copytree(run_dir / "midtrain" / "model", folder)
    steep = PositionPrior([-100.0 * j for j in range(len(CANDS))])
    steep.save(folder)
    files = {"items": run_dir / "data" / "items.parquet", "sids": run_dir / "sid" / "sids.parquet"}
    shown = dataclasses.replace(reranker.prompts["direct"], order="prerank")
    with Reranker.load(folder, prompt=shown, **files) as rr:
        assert rr.prior == steep
        assert rr.rerank(HIST, CANDS).indices == list(range(len(CANDS)))  # the prior outweighs the model
    # shown shuffled, the order says nothing: the model's own scores rank
    shuffled = dataclasses.replace(shown, order="shuffled")
    with Reranker.load(folder, prompt=shuffled, **files) as rr, \
            Reranker.load(run_dir / "midtrain" / "model", prompt=shuffled, **files) as plain:
        assert rr.rerank(HIST, CANDS).scores == pytest.approx(plain.rerank(HIST, CANDS).scores)


def test_a_think_prompt_is_served_in_its_format(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompt settings reach serving: reasoning requests ask for the three tagged steps and get the
    explanation back; direct requests are unchanged."""
    from gr2.prompts.render import PromptConfig
    from gr2.prompts.think import steps_text
    from gr2.serve.reranker import ServeConfig

    from .conftest import fake_embed

    rr = Reranker.load(run_dir, prompt=PromptConfig(item_format="compact", reasoning_format="think"),
                       config=ServeConfig(max_new_tokens=24), embed_fn=fake_embed)
    try:
        assert rr.prompts["reasoning"].think and not rr.prompts["direct"].think
        sids = {r: rr.catalogue.get(r).sid for r in CANDS}
        steps = steps_text(["hair care", "shampoos", "the first fits"], sep="")
        ranking = ", ".join(f'"{sids[c]}"' for c in CANDS)
        text = f'{{"explanation": "{steps}", "recommendations": [{ranking}]}}'
        seen: list[list[int]] = []

        def fake_generate(model, tok, prompts, *a):
            seen.extend(prompts)
            return [text] * len(prompts)

        monkeypatch.setattr(reranker_mod, "generate_answers", fake_generate)
        res = rr.rerank(HIST, CANDS, mode="reasoning")
        assert "<user_interests>" in rr.tokenizer.decode(seen[0])
        assert res.valid and res.order == CANDS and res.reasoning == steps
    finally:
        rr.close()
