"""The next-item prompt of mid-training's ``sequential`` task (docs/method.md §4), shared with inference.

:mod:`gr2.midtrain.tasks` builds the task's examples with :func:`sequential_prompt` (completion: the
target's wrapped SID); a retriever prompting the mid-trained model (:func:`gr2.llm.retrieval.default_prompt_fn`,
the LLM pre-ranker) must use the same prompt to match training. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SEQUENTIAL_HEADER", "SEQUENTIAL_MAX_HISTORY", "SEQUENTIAL_QUESTION", "sequential_prompt"]

SEQUENTIAL_HEADER = "Items a user bought, oldest first: "
SEQUENTIAL_QUESTION = "\nNext item:"
SEQUENTIAL_MAX_HISTORY = 20
"""Most recent items shown in the prompt by default (``MidtrainConfig.max_history``'s default)."""


def sequential_prompt(history_sids: Sequence[str]) -> str:
    """Prompt of the next-SID task: the history's wrapped SIDs, oldest first (completion: the SID)."""
    return SEQUENTIAL_HEADER + "".join(history_sids) + SEQUENTIAL_QUESTION
