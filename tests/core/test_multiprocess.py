"""The training stages launched as two processes (``accelerate launch --config_file
configs/accelerate/ddp.yaml --num_processes 2`` with CUDA hidden: two CPU processes on gloo;
``accelerate launch --cpu`` starts one process whatever ``--num_processes`` says, see README).

The tiny run (tests/tiny_run.py) is made up to ``traces`` in this process, then ``gr2 midtrain``,
``gr2 sft`` and ``gr2 rl`` run once in one process (the reference) and once launched as two processes
with the same global batch (each process gets half of ``batch_size``, gr2.training.dist). The two-process
run must write every artifact exactly once and completely (no temporary file, one TensorBoard file a
log folder, a manifest that says done with the reference's fingerprints), train on the same examples
and reach the same losses and weights: each step trains on the same examples (transformers' sampler
shuffles once, independently of the process count, and accelerate gives each process consecutive
halves of the global batch) from the same initial weights, so the runs differ only in float32
summation order (DDP averages two half-batch gradients instead of summing one batch; RL samples seeded
rollouts, the same rows in either run). That moves a
loss by ~1e-7 relative here, the weights by less than 1e-6; the test allows 1e-5. A wrong global batch
(each process taking the whole ``batch_size``: measured by hand) moves the tiny run's losses by 2e-4 to
5e-3 relative from the first step on, and different examples by as much as consecutive steps differ
(1e-3–1e-2), well outside it. Finally a checkpoint the two processes wrote
is resumed by one process and reaches the uninterrupted run's last step.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tiny_llm
from conftest import write_generic
from tiny_run import tiny_overrides

from gr2.config import load_config, save_config
from gr2.pipeline import run_pipeline
from gr2.runs import RunDir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

TRAINING = ["midtrain", "sft", "rl"]
#: Several logged steps, checkpoints kept (to resume from) and global batches that split over 2 processes.
EXTRA = ["midtrain.warmup_steps=2", "midtrain.steps=4", "midtrain.logging_steps=1", "midtrain.n_examples=32",
         "sft.steps=3", "sft.batch_size=4", "sft.logging_steps=1", "sft.save_steps=1",
         "sft.keep_checkpoints=true", "rl.seeded_rollouts=true", "rl.steps=3", "rl.lr=1e-3",
         # constrained reasoning-free rollouts: valid rankings whose rewards differ, so RL learns something
         "rl.reasoning=false", "rl.constrained=true", "rl.max_completion_length=96", "rl.num_generations=4"]
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
RL_WEIGHT_ATOL = 1e-4
"""RL's weights: its 3 Adam steps at lr 1e-3 move weights by up to 3e-3, and Adam's m/sqrt(v) turns the
float-order differences of near-zero gradients into update differences of ~1e-5 (measured 1.2e-5);
other rollouts move them by the whole step."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gr2(*args: str, processes: int = 1, config: str = "ddp", returncode: int = 0) -> str:
    """``gr2 ARGS`` in a child process; with ``processes > 1`` under ``accelerate launch`` with the
    README's ``configs/accelerate/<config>.yaml``, CUDA hidden (CPU processes on gloo). Returns stderr."""
    cli = ["-m", "gr2.cli", *args]
    if processes > 1:
        cli = ["-m", "accelerate.commands.launch", "--config_file", str(ROOT / f"configs/accelerate/{config}.yaml"),
               "--num_processes", str(processes), "--main_process_port", str(free_port()), *cli]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *cli], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == returncode, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(one, two)``: the same tiny run trained by one process and by two."""
    tmp = tmp_path_factory.mktemp("multiprocess")
    student = tiny_llm.save_student(tmp / "student")
    cfg = load_config(None, tiny_overrides(student) + EXTRA,
                      base={"data": {"dataset": str(write_generic(tmp / "mydata"))}})
    save_config(cfg, tmp / "config.yaml")
    run_pipeline(tmp / "base", cfg, stages=["data", "sid", "candidates", "traces"])
    one, two = tmp / "one", tmp / "two"
    shutil.copytree(tmp / "base", one, symlinks=True)
    shutil.copytree(tmp / "base", two, symlinks=True)
    run_pipeline(one, cfg, stages=TRAINING)
    for stage in TRAINING:
        gr2(stage, "--run-dir", str(two), processes=2)
    return one, two


def files(run: Path, stage: str) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in (run / stage).rglob("*") if p.is_file())


def per_folder(paths: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in paths:
        out[str(Path(p).parent)] = out.get(str(Path(p).parent), 0) + 1
    return out


def losses(run: Path, stage: str) -> dict[str, list[tuple[int, float]]]:
    m = json.loads((run / stage / "metrics.json").read_text())
    phases = m["phases"] if stage == "midtrain" else {"train": {"log": m["log"]}}
    return {name: [(h["step"], h["loss"]) for h in p["log"]] for name, p in phases.items()}


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_two_processes_write_every_artifact_once_and_completely(runs):
    one, two = runs
    manifest = {json.loads((r / "manifest.json").read_text())["stages"][s]["status"] for r in runs for s in TRAINING}
    assert manifest == {"done"}
    want, got = (json.loads((r / "manifest.json").read_text())["stages"] for r in runs)
    for stage in TRAINING:
        assert got[stage]["fingerprint"] == want[stage]["fingerprint"]
        assert got[stage]["outputs"] == want[stage]["outputs"]
        ours, theirs = files(two, stage), files(one, stage)
        assert not [p for p in ours if ".tmp" in p or p.endswith(".stale")], ours
        # one process's checkpoints hold rng_state.pth, two processes' rng_state_0.pth and rng_state_1.pth;
        # TensorBoard files are named after the process that writes them: exactly one per log folder
        plain = [p for p in ours if "/tb/" not in p and "rng_state" not in p]
        assert plain == [p for p in theirs if "/tb/" not in p and "rng_state" not in p], stage
        tb = per_folder([p for p in ours if "/tb/" in p])
        assert tb == per_folder([p for p in theirs if "/tb/" in p]) and set(tb.values()) == {1}, tb
    for ckpt in (two / "sft" / "checkpoints").glob("checkpoint-*"):
        assert sorted(p.name for p in ckpt.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    for rel in ("midtrain/examples/train.parquet", "midtrain/examples/eval.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(two / rel), pd.read_parquet(one / rel), obj=rel)
    for stage in TRAINING:
        json.loads((two / stage / "metrics.json").read_text())  # complete JSON
        assert set(weights(two / stage / "model")) == set(weights(one / stage / "model"))
    assert len((two / "rl" / "log.jsonl").read_text().splitlines()) == len((one / "rl" / "log.jsonl").read_text().splitlines())


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    one, two = runs
    # RL with seeded rollouts (gr2.llm.seeded): every row samples the same completion in either run, so
    # the same tokens (TRL's count covers prompts and completions, gathered over processes) and rewards
    want = [json.loads(line) for line in (one / "rl" / "log.jsonl").read_text().splitlines()]
    assert len({h["reward"] for h in want}) > 1, want  # the rewards differ: RL has a signal
    assert [json.loads(line)["num_tokens"] for line in (two / "rl" / "log.jsonl").read_text().splitlines()] == \
        [h["num_tokens"] for h in want]
    same_training(two, one, TRAINING)


def test_a_checkpoint_of_two_processes_resumes_in_one(runs, tmp_path):
    one, two = runs
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed, symlinks=True)
    last = sorted((resumed / "sft" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in last] == ["checkpoint-2", "checkpoint-3"]
    shutil.rmtree(last[-1])  # as if the run had been killed after step 2's checkpoint
    run = RunDir(resumed)
    run.mark_running("sft", run.manifest()["stages"]["sft"]["fingerprint"])
    cfg = load_config(resumed / "config.yaml")
    run_pipeline(resumed, cfg, stages=["sft"])  # not --force: that starts afresh
    metrics = json.loads((resumed / "sft" / "metrics.json").read_text())
    assert metrics["resumed_from"] == "checkpoint-2" and metrics["steps"] == 3
    assert [v for _, v in losses(resumed, "sft")["train"]] == pytest.approx(
        [v for _, v in losses(one, "sft")["train"]], rel=LOSS_RTOL)


def test_the_listwise_objective_trains_like_one_process(runs, tmp_path):
    """The listwise objective's own pieces under two processes: the position prior's learnt scale
    (a parameter outside the DDP model: its gradient is averaged over the processes by hand), the
    loss parts logged over both halves of the batch, and the learning curve written once."""
    _, two = runs
    listwise = ["--set", "sft.objective=listwise", "--set", "sft.listwise_position_prior=true",
                "--set", "sft.listwise_lists=12", "--set", "sft.curve_lists=2", "--set", "sft.curve_points=2"]
    results = []
    for name, processes in (("one", 1), ("two", 2)):
        run = tmp_path / name
        shutil.copytree(two, run, symlinks=True)
        shutil.rmtree(run / "sft" / "checkpoints")  # the trace objective's, kept for the resume test
        gr2("sft", "--run-dir", str(run), *listwise, processes=processes)
        results.append(run)
    want, got = (json.loads((r / "sft" / "metrics.json").read_text()) for r in results)
    assert got["objective"] == "listwise" and got["data"] == want["data"]
    for key in ("loss", "ce", "top1", "model_scale"):
        assert [h[key] for h in got["log"]] == pytest.approx([h[key] for h in want["log"]], rel=LOSS_RTOL), key
    assert got["position_prior"]["log_prior"] == want["position_prior"]["log_prior"]  # from the lists alone
    assert got["position_prior"]["model_scale"] == pytest.approx(want["position_prior"]["model_scale"], rel=LOSS_RTOL)
    curves = [(r / "sft" / "curve.jsonl").read_text().splitlines() for r in results]
    assert [json.loads(x)["step"] for x in curves[1]] == [json.loads(x)["step"] for x in curves[0]] == [0, 3]


def same_training(run: Path, reference: Path, stages: list[str]) -> None:
    """``run`` trained ``stages`` like ``reference``: losses (RL: rewards) and weights."""
    for stage in stages:
        if stage == "rl":
            got, want = ([json.loads(line)["reward"] for line in (r / "rl" / "log.jsonl").read_text().splitlines()]
                         for r in (run, reference))
            assert got == pytest.approx(want, rel=LOSS_RTOL)
        else:
            for phase, want in losses(reference, stage).items():
                assert [v for _, v in losses(run, stage)[phase]] == pytest.approx([v for _, v in want], rel=LOSS_RTOL)
        ours, theirs = weights(run / stage / "model"), weights(reference / stage / "model")
        assert set(ours) == set(theirs)
        worst = max(float((ours[k] - theirs[k]).abs().max()) for k in theirs)
        assert worst < (RL_WEIGHT_ATOL if stage == "rl" else WEIGHT_ATOL), (stage, worst)


@pytest.mark.parametrize("zero", [2, 3])
def test_deepspeed_zero_trains_like_one_process(runs, tmp_path, zero):
    """DeepSpeed's CPU back end (gloo) under the README's ZeRO configs: ZeRO-2 runs every training
    stage, ZeRO-3 (weights sharded) the trace SFT and RL, and refuses mid-training before it starts.
    Each trains like one process; ZeRO-3 saves the whole model, gathered."""
    pytest.importorskip("deepspeed", reason="pip install -e '.[deepspeed]'")
    one, _ = runs
    run = tmp_path / "run"
    shutil.copytree(one.parent / "base", run, symlinks=True)
    config = f"deepspeed_zero{zero}"
    if zero == 3:
        err = gr2("midtrain", "--run-dir", str(run), processes=2, config=config, returncode=1)  # the launcher's
        assert "needs the whole model on every process, which DeepSpeed ZeRO-3 does not keep" in err
        gr2("midtrain", "--run-dir", str(run))  # one process
    for stage in TRAINING if zero == 2 else TRAINING[1:]:
        gr2(stage, "--run-dir", str(run), processes=2, config=config)
    same_training(run, one, TRAINING)


def test_a_group_split_over_the_processes_trains_like_one_process(runs, tmp_path):
    """One prompt a step with G = 4 over 2 processes: each process generates half of the group. TRL
    gathers the rewards before it computes the group's advantages, dynamic sampling decides on the
    gathered rewards, and seeded rollouts key each row by its global index, so the split group trains
    as in one process."""
    one, _ = runs
    split = ["--set", "rl.batch_size=1", "--set", "rl.num_generations=4"]
    results = []
    for processes in (1, 2):
        run = tmp_path / str(processes)
        shutil.copytree(one, run, symlinks=True)
        gr2("rl", "--run-dir", str(run), "--force", *split, processes=processes)
        results.append(run)
    same_training(results[1], results[0], ["rl"])
