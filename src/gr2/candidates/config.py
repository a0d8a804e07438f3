"""Configuration of the candidates stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gr2.checks import at_least, check


@dataclass
class CandidatesConfig:
    """Which pre-ranker produces the K-candidate lists and how the lists are built.

    Test lists use the whole history before the test item, validation lists the history before
    the validation item; both come from a pre-ranker fitted on the training split only. Training
    lists (for SFT/RL) must be just as honest: a training list's target is an item of the user's
    training sequence, so its lists come from pre-rankers that never saw that item
    (``train_folds``; the argument is in :mod:`gr2.candidates.stage`).
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
    """Never propose an item already in the user's history (docs/method.md §2: without this an
    unfiltered SASRec puts the user's own last item first and hands re-rankers a fake win)."""
    keep_missed: bool = False
    """Paper protocol (``False``): keep only lists that contain the target. ``True`` keeps all
    lists; a missed target then counts as a miss for every ordering."""
    n_train_examples: int | None = None
    """Number of training lists to keep, sampled with ``seed`` among the lists that contain their
    target (lists are built for every eligible position first); ``None`` keeps all."""
    n_eval_examples: int | None = None
    """Build val/test lists for this many users only (sampled with ``seed``, the same users for both
    splits); ``None``: every user. For slow pre-rankers (``llm``)."""
    min_train_history: int = 1
    """A training example needs at least this many history items before its target."""
    train_positions_per_user: int | None = 1
    """Training lists per user: one per position of the user's training sequence (target = the
    item there, history = every item before it), newest positions first, at most this many;
    ``None``: every position with ``min_train_history`` items before it. ``1``: the last training
    item only (one list per user, as before). Heavy users are capped so that they do not dominate
    the lists (Beauty: median 4 training items, maximum 202)."""
    train_folds: int = 2
    """Cross-fitting of the training lists' pre-rankers. Users with a training list are split
    (seeded) into this many folds; fold f's lists come from a pre-ranker fitted on the training
    sequences (``Split.train``, no val/test item) of the other folds' users only and early-stopped
    on those users' validation items, so it never saw any item of the users whose lists it builds.
    Costs ``train_folds`` fits on ``(train_folds - 1) / train_folds`` of the users. ``1``: one
    pre-ranker fitted on every user's training sequence cut before its first targeted position (with
    ``train_positions_per_user=1``: minus the last training item, the previous behaviour); it has
    seen each user's history but was never fitted on a list's target or anything after it (its early
    stopping reads every user's validation pair, whose history holds the targets)."""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Keyword arguments per pre-ranker name, e.g. ``{"sasrec": {"hidden": 64, "max_epochs": 30}}``
    (fields of :class:`gr2.prerank.sasrec.SASRecConfig`; ``cooc`` takes ``m``, ``decay``; ``llm`` takes
    the arguments of :class:`gr2.prerank.llm_beam.LLMBeamPreranker`, e.g. ``num_beams``,
    ``batch_size``, ``model_path`` — default the run's ``midtrain/model``)."""
    seed: int = 0
    """Seed of pre-ranker training and of the training-list sample."""

    def __post_init__(self) -> None:
        checks = {
            f"k must be >= 1, got {self.k}": at_least(self.k, 1),
            f"n_train_examples must be >= 1 or None, got {self.n_train_examples}":
                at_least(self.n_train_examples, 1, none_ok=True),
            f"n_eval_examples must be >= 1 or None, got {self.n_eval_examples}":
                at_least(self.n_eval_examples, 1, none_ok=True),
            f"min_train_history must be >= 1, got {self.min_train_history}": at_least(self.min_train_history, 1),
            "train_positions_per_user must be >= 1 or None":
                self.train_positions_per_user is None or self.train_positions_per_user >= 1,
            "train_folds must be >= 1": self.train_folds >= 1,
        }
        check("candidates", checks)
