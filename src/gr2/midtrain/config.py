"""Configuration of the ``midtrain`` stage (docs/method.md §4). No heavy imports: the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gr2.checks import at_least, check, in_unit_interval, positive
from gr2.prompts.sequential import SEQUENTIAL_MAX_HISTORY
from gr2.training.config import TrainingFields

TASKS = ("persona", "sequential", "caption", "reverse_caption", "lm")
"""The mid-training tasks, in mixture order."""

ONEREC_THINK_MIXTURE = {
    "persona": 0.243,
    "sequential": 0.657,
    "caption": 0.0245,
    "reverse_caption": 0.0245,
    "lm": 0.05,
}
"""OneRec-Think's itemic-alignment mixture 24.3 / 65.7 / 4.9 / 5.0 % (persona / sequential /
captioning / general LM); the 4.9 % of captioning is split evenly between SID → text and text → SID."""


@dataclass
class MidtrainConfig(TrainingFields):
    """Stage 1: teach a small LLM the SID tokens (four tasks, warm-up then full or LoRA training)."""

    model: str = "smollm2-135m"
    """Student: a registry name, a local ``save_pretrained`` folder or a cached hub id
    (``gr2.llm.registry.resolve``)."""
    levels: int | None = None
    """SID levels to add as tokens. ``None``: the longest code tuple in ``sid/sids.parquet`` (at least
    the ``sid`` stage's ``levels``, so collision levels are covered)."""
    codebook_size: int | None = None
    """Codes per level. ``None``: the ``sid`` stage's ``codebook_size`` from the manifest, else the
    largest code + 1."""
    token_init: Literal["mean", "text", "catalogue"] = "mean"
    """How new SID embedding rows start (``gr2.llm.vocab.add_sid_tokens``): ``mean`` of the existing
    rows plus noise, ``text`` (the token's spelling), or ``catalogue``: each code as the mean embedding
    of the titles and category paths of the items that carry it (the tokens mean something before
    any training)."""

    # -- data -------------------------------------------------------------------------------
    mixture: dict[str, float] = field(default_factory=lambda: dict(ONEREC_THINK_MIXTURE))
    """Share of each task in the training mixture (normalised to sum 1; a task set to 0 is off).
    Keys: persona, sequential, caption, reverse_caption, lm."""
    n_examples: int = 20000
    """Training examples in the whole mixture (before the per-task cap)."""
    max_examples_per_task: int | None = None
    """Cap on any one task's training examples (``None``: no cap)."""
    eval_examples_per_task: int = 64
    """Held-out examples per task (built from the train split, never trained on) for the per-task loss
    before/after in ``metrics.json``."""
    max_history: int = SEQUENTIAL_MAX_HISTORY
    """Most recent training items shown in a sequential-prediction prompt."""
    persona_items: int = 10
    """Items (text + SID) in a persona-grounding example."""
    caption_items: Literal["all", "train"] = "all"
    """Items the two captioning tasks describe: ``all`` (the catalogue: item text is side information
    known at inference) or ``train`` (only items in some user's training sequence)."""
    lm_source: Literal["docstrings", "catalogue"] = "docstrings"
    """General language-modelling text: ``docstrings`` (English module docstrings of the Python
    standard library, installed with Python; no download) or ``catalogue`` (titles, categories and
    descriptions of the items ``caption_items`` selects)."""
    lm_chars: int = 600
    """Characters per general-LM passage."""
    category_separator: str = " > "
    """Joins an item's category path in its text."""
    max_seq_len: int = 512
    """Tokens per example (longer ones are truncated by the trainer)."""

    # -- training ---------------------------------------------------------------------------
    warmup_steps: int = 100
    """Phase 1: steps that train only the new SID embedding rows (0 skips the phase)."""
    warmup_lr: float = 5e-4
    """Learning rate of phase 1 (paper: 5e-4)."""
    steps: int = 1000
    """Phase 2: steps of full (or LoRA) training."""
    lr: float = 5e-5
    """Peak learning rate of phase 2 (linear decay, ``lr_warmup_ratio`` warm-up)."""
    lr_warmup_ratio: float = 0.03
    """Share of phase-2 steps with a linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay of phase 2 (phase 1 always uses 0: decay would move frozen rows)."""
    batch_size: int = 8
    """Examples per optimisation micro-step, over all processes (``accelerate launch``: each of N
    processes takes ``batch_size / N``, :mod:`gr2.training.dist`)."""
    grad_accum: int = 1
    """Gradient-accumulation steps."""
    eval_batch_size: int = 16
    """Examples per forward pass when measuring the per-task losses."""

    def __post_init__(self) -> None:
        check("midtrain", {
            **self.training_checks(),
            f"steps must be >= 1, got {self.steps}": at_least(self.steps, 1),
            f"warmup_steps must be >= 0, got {self.warmup_steps}": at_least(self.warmup_steps, 0),
            f"lr must be > 0, got {self.lr}": positive(self.lr),
            f"warmup_lr must be > 0, got {self.warmup_lr}": positive(self.warmup_lr),
            f"lr_warmup_ratio must be in [0, 1], got {self.lr_warmup_ratio}": in_unit_interval(self.lr_warmup_ratio),
            f"batch_size must be >= 1, got {self.batch_size}": at_least(self.batch_size, 1),
            f"grad_accum must be >= 1, got {self.grad_accum}": at_least(self.grad_accum, 1),
            f"eval_batch_size must be >= 1, got {self.eval_batch_size}": at_least(self.eval_batch_size, 1),
            f"n_examples must be >= 1, got {self.n_examples}": at_least(self.n_examples, 1),
            f"eval_examples_per_task must be >= 0, got {self.eval_examples_per_task}":
                at_least(self.eval_examples_per_task, 0),
            f"max_seq_len must be >= 16, got {self.max_seq_len}": at_least(self.max_seq_len, 16),
            f"levels must be >= 1 or None, got {self.levels}": at_least(self.levels, 1, none_ok=True),
            f"codebook_size must be >= 1 or None, got {self.codebook_size}": at_least(self.codebook_size, 1, none_ok=True),
        })
