"""Run directories: the files every stage reads and writes, and the manifest that says which
stages are complete.

A run directory is the only interface between stages. Every file is written atomically (a temp
file in the same folder, then ``os.replace``), and a stage is marked done in ``manifest.json``
only after all its outputs exist, so killing a run at any moment never leaves a half-written
artifact that a later run would trust.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only a type here: the CLI imports this module and stays free of pandas
    import pandas as pd

MANIFEST = "manifest.json"
_TRACKED_PACKAGES = (
    "gr2", "torch", "transformers", "trl", "peft", "accelerate", "sentence-transformers",
    "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm",
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (file or folder); it replaces ``path`` on success.

    Use it for writers that take a path (``save_pretrained``, ``torch.save``, ``to_parquet``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    remove_path(tmp)
    try:
        yield tmp
        if path.exists() and tmp.is_dir():
            remove_path(path)
        os.replace(tmp, path)
    finally:
        remove_path(tmp)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One dict per non-empty line (``rl/log.jsonl``, ``sft/curve.jsonl``); empty when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def remove_path(path: Path) -> None:
    """Delete a file, a symlink (not what it points to) or a folder tree; nothing when absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunDir:
    """A run directory ``runs/NAME/`` with one subfolder per stage and ``manifest.json``."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def stage_dir(self, stage: str) -> Path:
        d = self.path / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def file(self, stage: str, name: str) -> Path:
        """Path of an artifact; raises a clear error when an earlier stage has not produced it."""
        p = self.path / stage / name
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist: run the '{stage}' stage first (e.g. `gr2 {stage} --run-dir {self.path}`)"
            )
        return p

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return read_json(self.manifest_path)
        return {"created": _now(), "stages": {}}

    def _update(self, fn) -> dict[str, Any]:
        m = self.manifest()
        fn(m)
        atomic_write_json(self.manifest_path, m)
        return m

    def record_config(self, config: dict[str, Any]) -> None:
        def upd(m: dict[str, Any]) -> None:
            m["config"] = config
            m["git_commit"] = git_commit()
            m["versions"] = package_versions()

        self._update(upd)

    def is_complete(self, stage: str, fingerprint: str | None = None) -> bool:
        """True when ``stage`` finished, with this config ``fingerprint``, and its outputs exist."""
        info = self.manifest().get("stages", {}).get(stage)
        if not info or info.get("status") != "done":
            return False
        if fingerprint is not None and info.get("fingerprint") != fingerprint:
            return False
        source = info.get("reused_from")
        if source and (self.path / stage).is_symlink() and not RunDir(Path(source)).is_complete(
                stage, info.get("fingerprint")):
            return False  # the link shows the other run's current files: made with another config since
        return all((self.path / out).exists() for out in info.get("outputs", []))

    def mark_running(self, stage: str, fingerprint: str | None = None) -> None:
        def upd(m: dict[str, Any]) -> None:
            m.setdefault("stages", {})[stage] = {
                "status": "running", "started": _now(), "fingerprint": fingerprint,
            }

        self._update(upd)

    def mark_done(self, stage: str, outputs: list[str], seconds: float, summary: dict | None = None) -> None:
        missing = [o for o in outputs if not (self.path / o).exists()]
        if missing:
            raise RuntimeError(f"stage {stage!r} claims outputs that do not exist: {missing}")

        def upd(m: dict[str, Any]) -> None:
            info = m.setdefault("stages", {}).setdefault(stage, {})
            info.update(status="done", finished=_now(), seconds=round(seconds, 2), outputs=outputs)
            if summary:
                info["summary"] = summary

        self._update(upd)

    def stage_info(self, stage: str) -> dict[str, Any] | None:
        """The manifest entry of ``stage`` (status, fingerprint, outputs, ...), ``None`` when absent."""
        return self.manifest().get("stages", {}).get(stage)

    def record_stage(self, stage: str, info: dict[str, Any]) -> None:
        """Set the manifest entry of ``stage`` as a whole (a stage linked from another run)."""
        def upd(m: dict[str, Any]) -> None:
            m.setdefault("stages", {})[stage] = info

        self._update(upd)

    def reused_from(self, stage: str) -> str | None:
        """The run whose outputs ``stage`` links to (:mod:`gr2.reuse`); ``None`` for a stage made here."""
        return (self.stage_info(stage) or {}).get("reused_from")

    def mark_failed(self, stage: str, error: str) -> None:
        def upd(m: dict[str, Any]) -> None:
            info = m.setdefault("stages", {}).setdefault(stage, {})
            info.update(status="failed", finished=_now(), error=error)

        self._update(upd)


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


STAGE_MODELS = ("midtrain", "sft", "rl")
"""Model names that mean "this run's ``<stage>/model`` folder"."""


def run_stage_model(run: RunDir, model: str) -> tuple[RunDir, str] | None:
    """``(run, stage)`` when ``model`` names a run's stage model: ``"midtrain"``, ``"sft"`` or ``"rl"``
    (this run's), or a path relative to this run ending in one of them whose ``model/`` folder exists,
    e.g. ``variants/targeted/sft`` (a variant trained inside this run, :mod:`gr2.variants`).
    ``None`` for anything else (registry name, folder, cached hub id)."""
    if model in STAGE_MODELS:
        return run, model
    rel = PurePosixPath(model)
    if (not rel.is_absolute() and ".." not in rel.parts and rel.name in STAGE_MODELS
            and (run.path / rel / "model" / "config.json").is_file()):
        return RunDir(run.path / rel.parent), rel.name
    return None


def model_source(run: RunDir | None, model: str) -> str:
    """What :func:`gr2.llm.registry.load` should load: for a run's stage model
    (:func:`run_stage_model`) its ``<stage>/model`` folder (an error naming the command to run when it
    is missing); anything else (registry name, folder, cached hub id) is passed on."""
    if run is None:
        if model in STAGE_MODELS:
            raise ValueError(f"model {model!r} names a stage's model: a run directory is needed")
        return model
    found = run_stage_model(run, model)
    if found is None:
        return model
    owner, stage = found
    return str(owner.file(stage, "model/config.json").parent)


def save_model(model: Any, tokenizer: Any, path: Path, state_dict: Any = None) -> None:
    """``save_pretrained`` of a model and its tokenizer into ``path``, atomically (a crash leaves no
    half-written model folder that a later stage would take for finished); ``state_dict``: the weights
    to write instead of the model's own (gathered from sharded processes)."""
    with atomic_path(Path(path)) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
