"""Mid-training examples (docs/method.md §4, OneRec-Think's "itemic alignment") from the TRAIN split only.

Every example is a ``prompt`` / ``completion`` pair (TRL's prompt-completion format: with
``completion_only_loss`` the loss covers the completion only; TRL appends EOS to it):

* ``persona`` — user persona grounding: a user's training history as lines interleaving each item's
  SID and text. The prompt is a short header, so the loss covers the whole history.
* ``sequential`` — next-item prediction: the prompt lists the last ``max_history`` training items'
  SIDs, the completion is the next item's SID (loss on the target only).
* ``caption`` — dense captioning: SID → ``"Title / Cat > Sub"`` (loss on the text only).
* ``reverse_caption`` — text → SID (loss on the SID only).
* ``lm`` — general language modelling on offline text (see :func:`lm_passages`); the prompt is
  empty, so the loss covers the passage.

Only ``Split.train`` (each user's sequence minus the validation and test targets) is read, so no
held-out interaction can appear in a persona or sequential example; caption tasks describe catalogue
items (``caption_items="all"``) or only items of some training sequence (``"train"``).

Pure pandas/numpy: no torch import. The sequential task's prompt is
:func:`gr2.prompts.sequential.sequential_prompt`, the prompt a retriever must use at inference to match
training.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gr2.midtrain.config import TASKS, MidtrainConfig
from gr2.prompts.sequential import sequential_prompt
from gr2.runs import RunDir, read_json

log = logging.getLogger(__name__)

PERSONA_HEADER = "Purchase history of a user (item ID and description per line):\n"
CAPTION_QUESTION = "\nTitle / Categories:"
REVERSE_PREFIX = "Item: "
REVERSE_QUESTION = "\nItem ID:"

LM_MODULES = (
    "argparse", "asyncio.events", "bisect", "calendar", "collections", "concurrent.futures",
    "contextlib", "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest", "email.message",
    "enum", "fractions", "functools", "gettext", "heapq", "http.client", "http.server", "imaplib",
    "inspect", "ipaddress", "json", "locale", "logging", "mailbox", "multiprocessing.pool",
    "pathlib", "pdb", "pickle", "pprint", "random", "sched", "secrets", "shelve", "shutil",
    "smtplib", "socket", "sqlite3", "ssl", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "unittest.case", "urllib.parse",
    "uuid", "warnings", "wave", "weakref", "zipfile",
)
"""Standard-library modules whose docstrings form the default general-LM text (English prose that
ships with every Python install)."""


# -- prompts (the sequential task's is shared with inference: gr2.prompts.sequential) -----------
def caption_prompt(sid: str) -> str:
    return sid + CAPTION_QUESTION


def reverse_caption_prompt(text: str) -> str:
    return REVERSE_PREFIX + text + REVERSE_QUESTION


def item_text(title: str, categories: Sequence[str] | None, sep: str = " > ") -> str:
    """``"Title / Cat > Sub"`` (the caption target); an empty title becomes ``"(untitled)"``."""
    title = (title or "").strip() or "(untitled)"
    cats = sep.join(str(c) for c in (categories if categories is not None else []) if str(c).strip())
    return f"{title} / {cats}" if cats else title


# -- inputs -----------------------------------------------------------------------------------
@dataclass
class TaskInputs:
    """What the builders read: per-item text and wrapped SID (index = item_id) and train sequences."""

    texts: list[str]
    sids: list[str]
    train: list[list[int]]
    descriptions: list[str]


def load_inputs(run: RunDir, cfg: MidtrainConfig) -> TaskInputs:
    from gr2.data.stage import load_items, load_split

    items = load_items(run).sort_values("item_id", kind="stable").reset_index(drop=True)
    sids = pd.read_parquet(run.file("sid", "sids.parquet")).sort_values("item_id", kind="stable")
    return inputs_from_frames(items, sids, load_split(run).train, cfg)


def inputs_from_frames(items: pd.DataFrame, sids: pd.DataFrame, train: list[list[int]],
                       cfg: MidtrainConfig) -> TaskInputs:
    from gr2.prompts.sids import render_sid

    n = len(items)
    if not np.array_equal(items["item_id"].to_numpy(), np.arange(n)):
        raise ValueError("data/items.parquet: item_id must be dense 0..N-1")
    sid_of = ["" for _ in range(n)]
    for iid, codes in zip(sids["item_id"].tolist(), sids["codes"].tolist()):
        sid_of[int(iid)] = render_sid([int(c) for c in codes], wrap=True)
    if any(not s for s in sid_of):
        raise ValueError("sid/sids.parquet does not cover every item of data/items.parquet")
    cats = items["categories"].tolist() if "categories" in items else [None] * n
    texts = [item_text(t, c, cfg.category_separator) for t, c in zip(items["title"].fillna("").tolist(), cats)]
    desc = items["description"].fillna("").tolist() if "description" in items else [""] * n
    return TaskInputs(texts=texts, sids=sid_of, train=[list(s) for s in train], descriptions=desc)


def sid_shape(run: RunDir) -> tuple[int, int]:
    """``(levels, codebook_size)`` of the run's SIDs (longest tuple; manifest's codebook size)."""
    sids = pd.read_parquet(run.file("sid", "sids.parquet"), columns=["codes"])
    levels = max(len(c) for c in sids["codes"])
    top = max(int(max(c)) for c in sids["codes"]) + 1
    try:
        sid_cfg = read_json(run.manifest_path).get("config", {}).get("sid", {})
    except FileNotFoundError:
        sid_cfg = {}
    size = int(sid_cfg.get("codebook_size") or top)
    return max(levels, int(sid_cfg.get("levels") or 0)), max(size, top)


# -- general LM text --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _docstrings(module: str) -> tuple[str, ...]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    out = []
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 80:
                out.append(doc)
    return tuple(dict.fromkeys(out))


def _chunks(text: str, size: int) -> list[str]:
    paras = [re.sub(r"[ \t]+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    out, cur = [], ""
    for p in paras:
        if not p:
            continue
        if cur and len(cur) + len(p) + 2 > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{p}" if cur else p
        while len(cur) > size:
            cut = cur.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            out.append(cur[:cut].rstrip())
            cur = cur[cut:].lstrip()
    if cur:
        out.append(cur)
    return [c for c in out if len(c) >= 40]


def lm_passages(cfg: MidtrainConfig, inputs: TaskInputs | None = None) -> list[str]:
    """General-LM passages of about ``cfg.lm_chars`` characters, in a fixed order."""
    if cfg.lm_source == "docstrings":
        texts = [d for m in LM_MODULES for d in _docstrings(m)]
    elif cfg.lm_source == "catalogue":
        if inputs is None:
            raise ValueError("lm_source='catalogue' needs the item texts")
        pool = _caption_pool(inputs, cfg)
        texts = ["\n".join(filter(None, [inputs.texts[i], inputs.descriptions[i]])) for i in pool]
        texts = ["\n\n".join(texts[i:i + 8]) for i in range(0, len(texts), 8)]
    else:
        raise ValueError(f"unknown lm_source {cfg.lm_source!r}")
    passages = [c for t in texts for c in _chunks(t, cfg.lm_chars)]
    if not passages:
        raise ValueError(f"no general-LM text found for lm_source={cfg.lm_source!r}")
    return passages


# -- builders ---------------------------------------------------------------------------------
def task_counts(mixture: dict[str, float], n_examples: int, cap: int | None = None) -> dict[str, int]:
    """Examples per task: ``n_examples`` split by the normalised mixture (largest remainder), capped."""
    unknown = set(mixture) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) in mixture: {sorted(unknown)}; tasks: {list(TASKS)}")
    w = np.array([max(0.0, float(mixture.get(t, 0.0))) for t in TASKS])
    if w.sum() <= 0:
        raise ValueError("the mixture gives every task weight 0")
    exact = w / w.sum() * n_examples
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n_examples - counts.sum()]:
        counts[i] += 1
    out = {t: int(c) for t, c in zip(TASKS, counts)}
    if cap is not None:
        out = {t: min(c, cap) for t, c in out.items()}
    return out


def _persona(inp: TaskInputs, rng: np.random.Generator, k: int, cfg: MidtrainConfig) -> list[tuple[str, str]]:
    users = [u for u, s in enumerate(inp.train) if len(s) >= 1]
    out = []
    for u in rng.choice(users, size=k) if users and k else []:
        seq = inp.train[u]
        n = min(len(seq), cfg.persona_items)
        start = int(rng.integers(0, len(seq) - n + 1))
        lines = [f"{inp.sids[i]} {inp.texts[i]}" for i in seq[start:start + n]]
        out.append((PERSONA_HEADER, "\n".join(lines)))
    return out


def _sequential(inp: TaskInputs, rng: np.random.Generator, k: int, cfg: MidtrainConfig) -> list[tuple[str, str]]:
    users = [u for u, s in enumerate(inp.train) if len(s) >= 2]
    out = []
    for u in rng.choice(users, size=k) if users and k else []:
        seq = inp.train[u]
        t = int(rng.integers(1, len(seq)))
        hist = seq[max(0, t - cfg.max_history):t]
        out.append((sequential_prompt([inp.sids[i] for i in hist]), inp.sids[seq[t]]))
    return out


def _caption_pool(inp: TaskInputs, cfg: MidtrainConfig) -> list[int]:
    if cfg.caption_items == "all":
        return list(range(len(inp.sids)))
    return sorted({i for s in inp.train for i in s})


def _caption(inp: TaskInputs, rng: np.random.Generator, k: int, cfg: MidtrainConfig) -> list[tuple[str, str]]:
    pool = _caption_pool(inp, cfg)
    return [(caption_prompt(inp.sids[i]), " " + inp.texts[i]) for i in (rng.choice(pool, size=k) if pool and k else [])]


def _reverse(inp: TaskInputs, rng: np.random.Generator, k: int, cfg: MidtrainConfig) -> list[tuple[str, str]]:
    pool = _caption_pool(inp, cfg)
    return [(reverse_caption_prompt(inp.texts[i]), inp.sids[i]) for i in (rng.choice(pool, size=k) if pool and k else [])]


def build_task(task: str, inp: TaskInputs, k: int, cfg: MidtrainConfig, rng: np.random.Generator,
               passages: list[str] | None = None) -> list[tuple[str, str]]:
    """``k`` examples ``(prompt, completion)`` of one task, drawn with replacement."""
    if task == "persona":
        return _persona(inp, rng, k, cfg)
    if task == "sequential":
        return _sequential(inp, rng, k, cfg)
    if task == "caption":
        return _caption(inp, rng, k, cfg)
    if task == "reverse_caption":
        return _reverse(inp, rng, k, cfg)
    if task == "lm":
        passages = passages if passages is not None else lm_passages(cfg, inp)
        return [("", passages[i]) for i in (rng.choice(len(passages), size=k) if k else [])]
    raise ValueError(f"unknown task {task!r}")


def build_examples(inp: TaskInputs, cfg: MidtrainConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, eval)`` frames with columns ``task``, ``prompt``, ``completion``.

    ``train`` follows the mixture (shuffled); ``eval`` holds up to ``eval_examples_per_task`` examples
    per task of the mixture, drawn with another seed, minus any that also occur in ``train``.
    """
    counts = task_counts(cfg.mixture, cfg.n_examples, cfg.max_examples_per_task)
    needs_lm = counts.get("lm", 0) > 0
    passages = lm_passages(cfg, inp) if needs_lm else None
    rng = np.random.default_rng(cfg.seed)
    erng = np.random.default_rng([cfg.seed, 1])
    rows, erows = [], []
    for task in TASKS:
        if counts[task] == 0:
            continue
        for p, c in build_task(task, inp, counts[task], cfg, rng, passages):
            rows.append((task, p, c))
        for p, c in build_task(task, inp, cfg.eval_examples_per_task, cfg, erng, passages):
            erows.append((task, p, c))
        got = sum(1 for r in rows if r[0] == task)
        if got < counts[task]:
            log.warning("midtrain: task %s has no source data (%d of %d examples)", task, got, counts[task])
    train = pd.DataFrame(rows, columns=["task", "prompt", "completion"])
    train = train.sample(frac=1.0, random_state=cfg.seed).reset_index(drop=True)
    ev = pd.DataFrame(erows, columns=["task", "prompt", "completion"])
    seen = set(zip(train["prompt"], train["completion"]))
    ev = ev[[(p, c) not in seen for p, c in zip(ev["prompt"], ev["completion"])]]
    ev = ev.drop_duplicates(["prompt", "completion"]).reset_index(drop=True)
    return train, ev
