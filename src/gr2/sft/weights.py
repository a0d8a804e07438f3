"""Which completion tokens are reasoning and which are ranking (docs/method.md §6), as pure functions.

The SFT loss is ``L = −λ_r Σ log P(reasoning tokens) − λ_o Σ log P(ranking tokens)`` over the
assistant message only. A completion is the JSON text of :func:`gr2.prompts.render.assistant_text`
followed by the end-of-turn token::

    {"explanation": "...", "recommendations": ["<s_a_1>...", ...]}<|im_end|>
    └──────── reasoning (λ_r) ──────┘└────────── ranking (λ_o) ──────────────┘

The ranking part runs from the opening quote of the ``"recommendations"`` key to the end (closing
bracket and brace, end-of-turn/EOS tokens); everything before it is reasoning. A completion with
nothing but ``{`` before the key (the no-reasoning variant) is ranking from its first character,
so λ_r = 0 cannot switch off the opening brace. Prompt tokens weigh 0.

Token boundaries need not match the split: a token that holds any character of the ranking part
(e.g. ``", "`` merged with the key's quote) counts as ranking, since it carries the decision to stop
explaining and start ranking. Pure Python, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["PROMPT", "RANKING", "REASONING", "part_weights", "ranking_start", "token_parts", "token_weights"]

PROMPT, REASONING, RANKING = 0, 1, 2
"""Part ids of a token: not trained (prompt), explanation, recommendations."""

# the key itself, not the same word quoted inside the explanation string (escaped there as \")
_KEY = re.compile(r'(?<!\\)"recommendations"\s*:')


def ranking_start(completion: str) -> int:
    """Index of the first character of the ranking part of ``completion``: the opening quote of the
    last unescaped ``"recommendations"`` key, or 0 when only ``{`` and whitespace precede it.

    Raises ``ValueError`` when the completion has no such key (not a re-ranking answer).
    """
    found = list(_KEY.finditer(completion))
    if not found:
        raise ValueError(f'completion has no "recommendations" key: {completion[:80]!r}…')
    start = found[-1].start()
    return 0 if completion[:start].strip() in ("", "{") else start


def token_parts(offsets: Sequence[tuple[int, int]], n_prompt_tokens: int, split: int) -> list[int]:
    """Part id of every token: :data:`PROMPT` for the first ``n_prompt_tokens``, then
    :data:`RANKING` for a token that ends after character ``split`` (offsets and ``split`` index the
    same text), else :data:`REASONING`."""
    return [PROMPT if i < n_prompt_tokens else (RANKING if end > split else REASONING)
            for i, (_, end) in enumerate(offsets)]


def part_weights(lambda_reasoning: float, lambda_ranking: float) -> tuple[float, float, float]:
    """Loss weight per part id: ``(prompt, reasoning, ranking) = (0, λ_r, λ_o)``."""
    if lambda_reasoning < 0 or lambda_ranking < 0:
        raise ValueError("loss weights must be >= 0")
    return 0.0, float(lambda_reasoning), float(lambda_ranking)


def token_weights(completion: str, offsets: Sequence[tuple[int, int]], completion_start: int,
                  n_prompt_tokens: int, lambda_reasoning: float, lambda_ranking: float) -> list[float]:
    """Loss weight of every token of ``prompt + completion``.

    ``offsets`` are the tokens' character spans in the full text, in which ``completion`` starts at
    ``completion_start``; the first ``n_prompt_tokens`` tokens are the prompt (weight 0). Tokens of
    the explanation weigh λ_r, those from the ``"recommendations"`` key to the end λ_o.
    """
    weights = part_weights(lambda_reasoning, lambda_ranking)
    split = completion_start + ranking_start(completion)
    return [weights[p] for p in token_parts(offsets, n_prompt_tokens, split)]
