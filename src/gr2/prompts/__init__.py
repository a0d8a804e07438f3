"""Prompts for the LLM re-ranker: render (history + candidates → chat messages) and parse
(answer → validated, classified, repaired permutation). Pure Python, no torch."""

from gr2.prompts.chat import apply_chat_template
from gr2.prompts.parse import (
    STATUSES,
    ParseResult,
    canonical_sid,
    error_counts,
    identity_rate,
    parse_output,
)
from gr2.prompts.render import (
    DOMAIN_PRIMING,
    ItemText,
    PromptConfig,
    RenderedPrompt,
    assistant_text,
    build_messages,
    presentation_order,
    render_item,
    system_message,
)

__all__ = [
    "STATUSES",
    "DOMAIN_PRIMING",
    "ItemText",
    "ParseResult",
    "PromptConfig",
    "RenderedPrompt",
    "apply_chat_template",
    "assistant_text",
    "build_messages",
    "canonical_sid",
    "error_counts",
    "identity_rate",
    "parse_output",
    "presentation_order",
    "render_item",
    "system_message",
]
