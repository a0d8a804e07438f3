"""The chat template: chat messages -> the prompt text a model reads.

:func:`apply_chat_template` uses the tokenizer's own template (folding the system message into the
first user message for templates without a system role) or ChatML when asked to. Shared by every
stage that turns rendered prompts (:mod:`gr2.prompts.render`) into model input. Pure Python (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["apply_chat_template", "completion_text", "end_of_turn"]


def _merge_system(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Fold the system message into the first user message (for templates without a system role)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        if rest and rest[0]["role"] == "user":
            rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


def _chatml(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def apply_chat_template(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    fallback: Literal["chatml"] | None = None,
    **kwargs: Any,
) -> str:
    """The prompt text from the tokenizer's own chat template (``tokenize=False``).

    Templates that reject a system role (e.g. Gemma's) get the system message folded into the first
    user message. A tokenizer without a template raises ``ValueError`` unless ``fallback="chatml"``.
    Extra keyword arguments go to ``tokenizer.apply_chat_template``.
    """
    msgs = [dict(m) for m in messages]
    if getattr(tokenizer, "chat_template", None) is None:
        if fallback == "chatml":
            return _chatml(msgs, add_generation_prompt)
        raise ValueError("the tokenizer has no chat template (pass fallback='chatml' to use ChatML)")

    def run(ms: list[dict[str, str]]) -> str:
        out = tokenizer.apply_chat_template(ms, tokenize=False,
                                            add_generation_prompt=add_generation_prompt, **kwargs)
        if isinstance(out, list):  # some versions return a batch
            out = out[0] if out and isinstance(out[0], str) else "".join(map(str, out))
        return str(out)

    try:
        return run(msgs)
    except Exception as exc:  # noqa: BLE001 - template engines raise their own error types
        if "system" in str(exc).lower() and any(m["role"] == "system" for m in msgs):
            return run(_merge_system(msgs))
        raise


_PROBE = "GR2-END-OF-TURN-PROBE"


def end_of_turn(tokenizer: Any) -> str:
    """What must follow an assistant message for generation to stop: the template's text after an
    assistant message (e.g. ``<|im_end|>``), stripped, plus the EOS token when that text does not
    already end with it (generation stops on EOS only: :mod:`gr2.llm.generate`)."""
    rendered = apply_chat_template(
        tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}],
        add_generation_prompt=False, fallback="chatml")
    tail = rendered[rendered.rindex(_PROBE) + len(_PROBE):].strip()
    eos = tokenizer.eos_token or ""
    return tail if tail.endswith(eos) else tail + eos


def completion_text(completion: Any) -> str:
    """A generated completion as text: TRL's reward functions get strings, or message lists for
    conversational prompts (the last message's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)
