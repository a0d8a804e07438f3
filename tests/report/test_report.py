"""``report.md`` and its plots: on a real run with every stage (the end-to-end tiny slice of
tests/core/test_end_to_end.py, built once per module), on a run with only data and candidates, and
each plot function on small synthetic artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_llm
from conftest import write_generic

from gr2.config import load_config
from gr2.pipeline import run_pipeline
from gr2.report import build_report, make_plots, metric_bars, training_curves
from gr2.report.build import SECTIONS
from gr2.report.cli import add_report_parser, main
from gr2.report.plots import (
    PLOT_FILES,
    PLOTS_DIR,
    _bar_rows,
    midtrain_curves,
    rl_curves,
    sft_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROMPT = {"item_format": "compact", "max_history": 3, "domain_priming": False, "max_explanation_words": None}
TINY = [
    "data.k_core=2",
    "sid.levels=3", "sid.codebook_size=8", "sid.epochs=2", "sid.hidden_dims=[16]", "sid.latent_dim=8",
    "sid.batch_size=16", "sid.progress=false",
    "candidates.prerank=cooc", "candidates.n_train_examples=12",
]



@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage on a tiny slice (as tests/core/test_end_to_end.py, with every step logged so the
    training curves have points), plus ``gr2 eval retrieval``, then the report."""
    import torch

    from gr2.eval.retrieval import run_retrieval_eval

    tmp = tmp_path_factory.mktemp("report")
    student = tiny_llm.save_student(tmp / "student")
    overrides = TINY + [
        f"midtrain.model={student}", "midtrain.n_examples=16", "midtrain.warmup_steps=1", "midtrain.steps=2",
        "midtrain.batch_size=4", "midtrain.max_seq_len=64", "midtrain.eval_examples_per_task=2",
        "midtrain.logging_steps=1",
        "traces.teacher=evidence", "traces.gate_override=true", f"traces.prompt={json.dumps(PROMPT)}",
        "sft.steps=2", "sft.batch_size=2", "sft.max_seq_len=2048", "sft.logging_steps=1",
        "sft.curve_lists=3", "sft.curve_points=2",
        "rl.steps=1", "rl.batch_size=2", "rl.num_generations=2", "rl.max_completion_length=8",
        "rl.overlong_buffer=4", "rl.n_examples=4", f"rl.prompt={json.dumps(PROMPT)}",
        "eval.bootstrap=20", "eval.lambdamart_params.cv_folds=0", "eval.lambdamart_params.n_estimators=10",
        "eval.llm_lists=3", "eval.llm_max_new_tokens=8",
    ]
    cfg = load_config(None, overrides, base={"data": {"dataset": str(write_generic(tmp / "mydata"))}})
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on a shared machine
    try:
        run = run_pipeline(tmp / "run", cfg)
        run_retrieval_eval(run, "midtrain", split="test", sample=4, num_beams=10, batch_size=4)
    finally:
        torch.set_num_threads(before)
    build_report(run.path)
    return run.path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _section(text: str, title: str) -> str:
    """The body of ``## title`` up to the next ``## `` header."""
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0].strip()


# -- a full run --------------------------------------------------------------------------------------
def test_every_section_in_pipeline_order_and_none_says_not_run(full_run: Path):
    text = (full_run / "report.md").read_text()
    positions = [text.index(f"\n## {s.title}\n") for s in SECTIONS if s.stage != "rating"]  # a re-ranking run
    assert "\n## Rating prediction\n" not in text
    assert positions == sorted(positions)
    assert "Not run" not in text and "Could not be summarised" not in text
    for artifact in ("data/stats.json", "sid/report.json", "candidates/prerank.json", "midtrain/metrics.json",
                     "eval/retrieval-test.json", "traces/teacher_gate.json", "traces/stats.json",
                     "sft/metrics.json", "rl/metrics.json", "rl/log.jsonl", "eval/results.json",
                     "eval/results.md", "manifest.json", "config.yaml"):
        assert f"`{artifact}`" in text, f"no section names {artifact}"


def test_numbers_are_the_artifacts(full_run: Path):
    text = (full_run / "report.md").read_text()
    stats = _json(full_run / "data/stats.json")
    assert f"| interactions | {stats['interactions']:,} |" in _section(text, "Dataset")
    sid = _json(full_run / "sid/report.json")
    assert f"| uniqueness before resolution | {sid['raw']['uniqueness']:.4f} |" in text
    gate = _json(full_run / "traces/teacher_gate.json")
    assert f"| teacher | {gate['teacher']['top1']:.4f} | {gate['teacher']['R@5']:.4f} |" in text
    midtrain = _json(full_run / "midtrain/metrics.json")
    task, loss = next(iter(midtrain["loss_before"].items()))
    assert f"| {task} |" in text and f"{loss['loss']:.4f}" in _section(text, "Mid-training")
    retrieval = _json(full_run / "eval/retrieval-test.json")
    beam = retrieval["systems"]["LLM beam (midtrain)"]
    assert f"| LLM beam (midtrain) | {beam['R@5']:.4f} | {beam['R@10']:.4f} |" in text
    rl = _json(full_run / "rl/metrics.json")["log"]["reward"]
    assert f"| reward | {rl['first']:.4f} | {rl['last']:.4f} | {rl['mean']:.4f} |" in text

    results = _json(full_run / "eval/results.json")
    section = _section(text, "Results")
    for name, row in results["systems"].items():
        lo, hi = row["ci95"]["N@5"]
        assert f"| {name} | {row['metrics']['N@5']:.4f} [{lo:.4f}, {hi:.4f}]" in section, name
    for name, sub in results.get("subsets", {}).items():
        n5 = sub["systems"][name]["metrics"]["N@5"]
        ref = sub["systems"]["pre-rank order"]["metrics"]["N@5"]
        assert f"| {name} | {sub['n_lists']} | {n5:.4f} [" in section and f"| {ref:.4f} [" in section
    random = results["systems"]["random order"]["vs_prerank"]["N@5"]
    assert f"{random['rel_diff']:+.1%} [{random['rel_lo']:+.1%}, {random['rel_hi']:+.1%}]" in section
    assert (full_run / "eval/results.md").read_text().splitlines()[-1] in section  # verbatim
    systems = sorted((full_run / "eval/systems").glob("*.json"))
    assert systems, "the eval stage saved the sft/rl rows"
    for path in systems:
        s = _json(path)
        assert f"`eval/systems/{path.name}`" in section
        assert f"| {s['n_lists']} | {s['summary']['valid_rate']:.1%} |" in section.split(f"| {s['name']} | `")[1]

    manifest = _json(full_run / "manifest.json")
    seconds = manifest["stages"]["sid"]["seconds"]
    assert f"| sid | done | {seconds:,.1f} |" in _section(text, "Stage timings")
    commit = manifest["git_commit"]
    if commit:
        assert f"git checkout {commit.removesuffix('-dirty')}" in text
    assert f"gr2 run --config {full_run / 'config.yaml'} --out {full_run}-repro" in text
    assert (full_run / "config.yaml").read_text().strip() in text


def test_plots_are_pngs_linked_from_the_report(full_run: Path):
    text = (full_run / "report.md").read_text()
    for file in PLOT_FILES.values():
        path = full_run / PLOTS_DIR / file
        assert path.read_bytes()[:8] == PNG_MAGIC, file
        assert path.stat().st_size > 10_000, file
        assert f"]({PLOTS_DIR}/{file})" in text, file


def test_the_sft_section_shows_the_learning_curve(full_run: Path):
    points = [json.loads(line) for line in (full_run / "sft" / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 2] and all(p["lists"] == 3 for p in points)
    text = (full_run / "report.md").read_text()
    assert "| step | lists seen | val R@1 | val N@5 | pre-rank N@5 (same lists) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| 2 | 4 |"))
    assert [float(x) for x in row.strip("|").split("|")[2:]] == [points[1]["R@1"], points[1]["N@5"],
                                                                  points[1]["prerank_N@5"]]


def test_cli_writes_the_report(full_run: Path, capsys: pytest.CaptureFixture[str]):
    (full_run / "report.md").unlink()
    assert main(["--run-dir", str(full_run)]) == 0
    assert capsys.readouterr().out.strip() == str(full_run / "report.md")
    assert (full_run / "report.md").is_file()
    assert main(["--run-dir", str(full_run / "missing")]) == 2


def test_cli_registers_as_a_subcommand():
    import argparse

    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--run-dir", "runs/x"])
    assert args.run_dir == Path("runs/x") and args.handler.__name__ == "report_command"


# -- a partial run -----------------------------------------------------------------------------------
@pytest.fixture
def partial_run(tmp_path: Path) -> Path:
    cfg = load_config(None, TINY, base={"data": {"dataset": str(write_generic(tmp_path / "mydata"))}})
    return run_pipeline(tmp_path / "run", cfg, stages=["data", "candidates"]).path


def test_a_run_with_only_data_and_candidates_gets_a_report(partial_run: Path):
    text = build_report(partial_run).read_text()
    for title in ("Semantic IDs", "Mid-training", "Teacher traces", "SFT", "RL", "Results"):
        assert _section(text, title).startswith("**Not run**"), title
    assert "Produce it with `gr2 sid --run-dir" in _section(text, "Semantic IDs")
    for title in ("Dataset", "Pre-ranker and candidate lists", "Stage timings"):
        assert "Not run" not in _section(text, title), title
    assert f"| users | {_json(partial_run / 'data/stats.json')['users']:,} |" in text
    assert not list((partial_run / PLOTS_DIR).glob("*.png"))
    assert "![" not in text


def test_a_failed_stage_and_an_odd_artifact_do_not_stop_the_report(partial_run: Path):
    manifest = _json(partial_run / "manifest.json")
    manifest["stages"]["sid"] = {"status": "failed", "error": "RuntimeError: boom"}
    (partial_run / "manifest.json").write_text(json.dumps(manifest))
    (partial_run / "candidates/prerank.json").write_text("[1, 2]")  # not the expected object
    text = build_report(partial_run).read_text()
    assert "**Not run** (manifest: failed: RuntimeError: boom)" in _section(text, "Semantic IDs")
    assert "Could not be summarised" in _section(text, "Pre-ranker and candidate lists")
    assert "| users |" in _section(text, "Dataset")


def test_a_stale_plot_is_removed(partial_run: Path):
    stale = partial_run / PLOTS_DIR / PLOT_FILES["rl"]
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(PNG_MAGIC)
    assert make_plots(partial_run) == {}
    assert not stale.exists()


# -- plot functions on synthetic artifacts -------------------------------------------------------------
def _row(n5: float, r1: float, width: float = 0.05) -> dict:
    return {"metrics": {"N@5": n5, "R@1": r1},
            "ci95": {"N@5": [n5 - width, n5 + width], "R@1": [r1 - width, r1 + width]}, "vs_prerank": {}}


def _is_png(path: Path | None) -> bool:
    return path is not None and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


def test_metric_bars(tmp_path: Path):
    results = {"split": "test", "n_lists": 100,
               "systems": {"pre-rank order": _row(0.5, 0.3), "LambdaMART (val-trained)": _row(0.6, 0.4)},
               "subsets": {"rl": {"n_lists": 10, "systems": {"pre-rank order": _row(0.45, 0.2),
                                                             "rl": _row(0.5, 0.3, 0.2)}}}}
    assert _is_png(metric_bars(results, tmp_path / "bars.png"))
    results["subsets"]["sft"] = {"n_lists": 10, "systems": {"pre-rank order": _row(0.45, 0.2), "sft": _row(0.4, 0.2)}}
    labels = [label for label, _ in _bar_rows(results)]
    assert labels == ["pre-rank order", "LambdaMART (val-trained)", "pre-rank order (10 lists)", "rl (10 lists)",
                      "sft (10 lists)"], "subsets on the same lists share one reference bar"
    assert metric_bars({"systems": {}}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_rl_curves_with_and_without_a_validation_metric(tmp_path: Path):
    lines = [{"step": s, "reward": -1 + s / 5, "rl/valid_rate": s / 10, "rl/copy_prerank_rate": 0.5,
              "rl/copy_shown_rate": 0.1, "val/N@5": 0.4 + s / 100} for s in range(1, 6)]
    assert _is_png(rl_curves(lines, tmp_path / "rl.png"))
    assert _is_png(rl_curves([{"step": 1, "reward": 0.0}], tmp_path / "one.png"))
    assert rl_curves([{"step": 1, "loss": 0.0}], tmp_path / "none.png") is None


def test_midtrain_and_sft_curves(tmp_path: Path):
    before = {"sequential": {"loss": 6.0}, "persona": {"loss": 5.0}}
    after = {"sequential": {"loss": 4.0}, "persona": {"loss": 4.5}}
    assert _is_png(midtrain_curves({"loss_before": before, "loss_after": after}, tmp_path / "m.png"))
    phases = {"main": {"log": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}]}}
    assert _is_png(midtrain_curves({"phases": phases}, tmp_path / "m2.png"))
    assert midtrain_curves({"phases": {"main": {"log": []}}}, tmp_path / "m3.png") is None
    log = [{"step": s, "loss": 3 - s / 10, "nll_reasoning": 2.0, "nll_ranking": 1 / s} for s in range(1, 4)]
    assert _is_png(sft_curves({"log": log}, tmp_path / "s.png"))
    assert sft_curves({"log": []}, tmp_path / "s2.png") is None


def test_training_curves_skip_stages_not_run(tmp_path: Path):
    assert training_curves(tmp_path, tmp_path / PLOTS_DIR) == {}
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft/metrics.json").write_text(json.dumps({"log": [{"step": 1, "loss": 1.0}]}))
    made = training_curves(tmp_path, tmp_path / PLOTS_DIR)
    assert list(made) == ["sft"] and _is_png(made["sft"])
