"""Configuration of the candidates stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CandidatesConfig:
    """Which pre-ranker produces the K-candidate lists and how the lists are built.

    Test lists use the whole history before the test item, validation lists the history before
    the validation item; both come from a pre-ranker fitted on the training split only. Training
    lists (for SFT/RL) must be just as honest: they come from a second pre-ranker fitted on the
    training split minus each user's last training item, which is then their target.
    """

    prerank: str = "sasrec"
    """``sasrec`` (default), ``popularity``, ``cooc`` (item-to-item transitions) or ``llm`` (the
    paper's "Pre-rank (MTL)": trie-constrained beam search with the run's mid-trained model; needs
    the ``sid`` and ``midtrain`` stages; about 2 s per user on 2 CPU cores, so set
    ``n_eval_examples``)."""
    train_prerank: str | None = None
    """Pre-ranker of the training lists (``None``: the same as ``prerank``, except ``llm``: the
    mid-trained model has seen every training target and cannot be refitted without them, so its
    training lists come from an honest ``sasrec``)."""
    k: int = 10
    """Number of candidates per list."""
    exclude_seen: bool = True
    """Never propose an item already in the user's history (method.md §2: without this an
    unfiltered SASRec puts the user's own last item first and hands re-rankers a fake win)."""
    keep_missed: bool = False
    """Paper protocol (``False``): keep only lists that contain the target. ``True`` keeps all
    lists; a missed target then counts as a miss for every ordering."""
    n_train_examples: int | None = None
    """Number of training lists to keep, sampled with ``seed`` among the lists that contain their
    target (lists are built for every eligible user first); ``None`` keeps all."""
    n_eval_examples: int | None = None
    """Build val/test lists for this many users only (sampled with ``seed``, the same users for both
    splits); ``None``: every user. For slow pre-rankers (``llm``)."""
    min_train_history: int = 1
    """A training example needs at least this many history items before its target."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Keyword arguments per pre-ranker name, e.g. ``{"sasrec": {"hidden": 64, "max_epochs": 30}}``
    (fields of :class:`gr2.prerank.sasrec.SASRecConfig`; ``cooc`` takes ``m``, ``decay``; ``llm`` takes
    the arguments of :class:`gr2.prerank.llm_beam.LLMBeamPreranker`, e.g. ``num_beams``,
    ``batch_size``, ``model_path`` — default the run's ``midtrain/model``)."""
    seed: int = 0
    """Seed of pre-ranker training and of the training-list sample."""
