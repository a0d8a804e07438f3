"""Run configuration: one dataclass per stage, gathered in :class:`RunConfig`.

A run is configured by a YAML file (a profile such as ``quick`` or ``full``, or the user's own
file) plus ``--set section.field=value`` overrides on the command line. Every field is typed and
documented where it is declared; unknown keys are an error naming the offending path, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gr2.candidates.config import CandidatesConfig
from gr2.checks import ConfigError
from gr2.data.config import DataConfig
from gr2.eval.config import EvalConfig
from gr2.fingerprints import without_neutral
from gr2.midtrain.config import MidtrainConfig
from gr2.rating.config import RatingConfig
from gr2.rl.config import RLConfig
from gr2.sft.config import SFTConfig
from gr2.sid.config import SidConfig
from gr2.slates.config import SlatesConfig
from gr2.traces.config import TracesConfig


@dataclass
class RunConfig:
    """Everything a run needs: the task, then one field per stage's configuration."""

    task: typing.Literal["rerank", "rating"] = "rerank"
    """``rerank``: the re-ranking pipeline (data → sid → … → eval); ``rating``: rating prediction
    (data → rating, docs/rating.md). The stages of each: :data:`gr2.stages.TASKS`."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data loading, k-core filtering and the leave-one-out split."""
    sid: SidConfig = field(default_factory=SidConfig)
    """Semantic-ID tokenizer."""
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    """Pre-ranker and the K-candidate lists."""
    midtrain: MidtrainConfig = field(default_factory=MidtrainConfig)
    """Stage 1: mid-train the student LLM on SID tokens (docs/midtrain.md)."""
    traces: TracesConfig = field(default_factory=TracesConfig)
    """Stage 2: reasoning traces from a teacher (rejection or targeted sampling)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage 3a: weighted SFT of the student on the accepted traces."""
    rl: RLConfig = field(default_factory=RLConfig)
    """Stage 3b: DAPO with verifiable re-ranking rewards."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Baselines, metrics and the results table."""
    slates: SlatesConfig = field(default_factory=SlatesConfig)
    """Logged slates with graded labels instead of a dataset and a pre-ranker (docs/slates.md)."""
    rating: RatingConfig = field(default_factory=RatingConfig)
    """The rating-prediction task (``task: rating``; docs/rating.md)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections: a stage is stale when its sections changed. Fields of
        :data:`gr2.fingerprints.NEUTRAL_FIELDS` at their neutral value are left out, so adding such a field does not
        make the stages of finished runs look stale."""
        payload = {name: without_neutral(dataclasses.asdict(getattr(self, name))) for name in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def profile_path(name: str) -> Path:
    """Path of a bundled profile (``quick``, ``medium``, ``gpu``, ``full``, ``tiny``) shipped in ``gr2/configs``."""
    path = Path(str(resources.files("gr2") / "configs" / f"{name}.yaml"))
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown profile {name!r}; available: {', '.join(available)}")
    return path


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the last
    one without a word, so an edited config could silently not mean what it says)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_config(
    path: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Build a :class:`RunConfig` from a YAML file, then ``section.field=value`` overrides.

    ``base`` is merged first (used for values given as dedicated CLI flags such as ``--dataset``).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        raw = loaded
    _deep_merge(raw, base or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.field=value")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem})") from None
    return _build(RunConfig, raw, "config")


def save_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # a range check of the section (gr2.checks): one line, no traceback
        raise ConfigError(str(exc)) from None


_EXPONENT_FLOAT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; nested dataclasses are built recursively."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; a user means the number
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def run_rl_config(run_dir: str | Path, overrides: Sequence[str] = (), **fields: Any) -> RLConfig:
    """A run's ``rl`` config (its ``config.yaml``; the defaults without one), then ``overrides``
    (``rl.field=value``), then ``fields`` (``None`` leaves a field as it is): what the RL benchmarks
    train with. The overlong buffer is capped at the completion length, so a short
    ``max_completion_length`` stays valid."""
    path = Path(run_dir) / "config.yaml"
    cfg = load_config(path if path.exists() else None, list(overrides)).rl
    changes = {k: v for k, v in fields.items() if v is not None}
    length = changes.get("max_completion_length", cfg.max_completion_length)
    return dataclasses.replace(cfg, **changes, overlong_buffer=min(cfg.overlong_buffer, length))
