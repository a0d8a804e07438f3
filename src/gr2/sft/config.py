"""Configuration of the ``sft`` stage (docs/method.md §6). No heavy imports: the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gr2.checks import at_least, check, in_unit_interval, positive
from gr2.training.config import TrainingFields


@dataclass
class SFTConfig(TrainingFields):
    """Stage 3a: supervised fine-tuning on the accepted reasoning traces with a weighted loss."""

    objective: Literal["traces", "listwise"] = "traces"
    """``traces``: the paper's SFT on the teacher's accepted traces (docs/method.md §6). ``listwise``: train
    the score the eval's direct rows and the server rank by — each candidate's log-probability of being
    written first — with a softmax over the candidates against the true next item, on the training
    lists of ``candidates/train.parquet`` (:mod:`gr2.sft.listwise`; the traces are not read)."""
    init: str = "midtrain"
    """Model to start from: ``"midtrain"`` (this run's ``midtrain/model``, which knows the SID
    tokens), or a registry name / ``save_pretrained`` folder (``gr2.llm.registry.resolve``)."""
    max_examples: int | None = None
    """``objective: traces``: train on a seeded sample (``seed``) of this many of the accepted traces,
    in their file order — a small cold-start set before RL (RecOne, docs/method.md §10; the
    ``recone`` variant, :mod:`gr2.variants`). ``None``: every accepted trace."""
    lambda_reasoning: float = 0.5
    """λ_r: weight of the explanation tokens in ``L = −λ_r Σ log P(reasoning) − λ_o Σ log P(ranking)``
    (docs/method.md §6; paper: λ_r < λ_o). 0 trains on the ranking only."""
    lambda_ranking: float = 1.0
    """λ_o: weight of the ``"recommendations"`` tokens (from the key to the end of the turn)."""

    # -- the listwise objective (objective: listwise) ------------------------------------------
    listwise_lists: int | None = None
    """Training lists used (a seeded sample of ``candidates/train.parquet``); ``None``: all."""
    listwise_ce: float = 1.0
    """Weight of the cross-entropy of the softmax over the K candidates' scores against the true next item."""
    listwise_distill: float = 0.0
    """Weight of the ListNet distillation of the pre-ranker's order: cross-entropy between
    ``softmax(prerank scores / listwise_temperature)`` and the softmax over the student's scores. 0: off."""
    listwise_temperature: float = 1.0
    """Temperature of the pre-ranker's scores in the distillation target (higher: flatter)."""
    listwise_shuffle: float = 0.5
    """Share of training lists shown with the candidates in a shuffled order (seeded per list), the
    rest in the pre-ranker's order: a student that sees only the pre-rank order can learn to rank by
    position alone."""
    listwise_position_prior: bool = False
    """Add to each candidate's score the log-prior of the position it is shown at, estimated from the
    training lists (:class:`gr2.llm.scoring.PositionPrior`), on lists shown in the pre-ranker's order
    — in training, in the eval and in serving (saved with the model). The model then learns only what
    the order does not already say; untrained, it ranks in the order shown."""

    train_top_layers: int | None = None
    """Train only the top N decoder layers (and the final norm; embeddings frozen), either objective:
    the backward pass stops at the lowest trained layer, the lever that makes CPU budgets see more
    lists. ``None``: every weight (or LoRA with ``lora``)."""

    # -- learning curve ---------------------------------------------------------------------------
    curve_lists: int = 0
    """Validation lists scored in direct mode (seeded sample, pre-rank order shown) for the learning
    curve ``sft/curve.jsonl``: validation N@5 against training lists seen, for either objective.
    0: no curve (each point costs about one second per list on 2 CPU cores)."""
    curve_points: int = 5
    """Points of the learning curve: before training, then evenly spaced over the steps."""

    # -- schedule ---------------------------------------------------------------------------
    epochs: float = 1.0
    """Passes over the accepted traces, or the training lists (used when ``steps`` is ``None``)."""
    steps: int | None = None
    """Optimisation steps; overrides ``epochs`` (handy for smoke runs)."""
    lr: float = 2e-5
    """Peak learning rate (linear decay after ``lr_warmup_ratio`` of the steps)."""
    lr_warmup_ratio: float = 0.03
    """Share of the steps with a linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    batch_size: int = 4
    """Examples per optimisation micro-step, over all processes (``accelerate launch``: each of N
    processes takes ``batch_size / N``, :mod:`gr2.training.dist`)."""
    grad_accum: int = 1
    """Gradient-accumulation steps (effective batch = ``batch_size × grad_accum``)."""
    max_seq_len: int = 2048
    """Tokens per example (prompt + completion); longer examples are cut from the right (the number
    whose completion was cut is reported in ``metrics.json``; one cut inside its prompt is dropped by
    TRL). A re-ranking prompt with 50 history items and 10 candidates is ~1,500–2,500 tokens."""

    # LoRA, checkpoints, logs, device, seed: gr2.training.config.TrainingFields

    def __post_init__(self) -> None:
        checks = {
            **self.training_checks(),
            f"steps must be >= 1 or None, got {self.steps}": at_least(self.steps, 1, none_ok=True),
            f"epochs must be > 0, got {self.epochs}": positive(self.epochs),
            f"lr must be > 0, got {self.lr}": positive(self.lr),
            f"lr_warmup_ratio must be in [0, 1], got {self.lr_warmup_ratio}": in_unit_interval(self.lr_warmup_ratio),
            f"batch_size must be >= 1, got {self.batch_size}": at_least(self.batch_size, 1),
            f"grad_accum must be >= 1, got {self.grad_accum}": at_least(self.grad_accum, 1),
            f"max_seq_len must be >= 1, got {self.max_seq_len}": at_least(self.max_seq_len, 1),
            "max_examples must be >= 1 or None": self.max_examples is None or self.max_examples >= 1,
            "max_examples samples traces (objective: traces); the listwise objective samples lists with "
            "listwise_lists": self.max_examples is None or self.objective == "traces",
            "listwise_lists must be >= 1 or None": self.listwise_lists is None or self.listwise_lists >= 1,
            "listwise_ce and listwise_distill must be >= 0, not both 0":
                min(self.listwise_ce, self.listwise_distill) >= 0 and self.listwise_ce + self.listwise_distill > 0,
            "listwise_temperature must be > 0": self.listwise_temperature > 0,
            "listwise_shuffle must be in [0, 1]": 0 <= self.listwise_shuffle <= 1,
            "curve_lists must be >= 0": self.curve_lists >= 0,
            "train_top_layers must be >= 1 or None": self.train_top_layers is None or self.train_top_layers >= 1,
            "train_top_layers and lora exclude each other": not (self.train_top_layers and self.lora),
            "curve_points must be >= 2": self.curve_points >= 2,
        }
        check("sft", checks)
