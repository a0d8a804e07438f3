"""The training layer's switches on a tiny llama: the compact LM head scores only the positions a loss
reads, with the same log-probabilities and gradients as TRL's every-position path."""

from __future__ import annotations

import pytest
import tiny_llm
import torch
import trl.trainer.utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from gr2.training.loop import compact_lm_head


def fused_loss(compact: bool, rows_seen: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(per-token log-probs, loss, gradient of the embeddings)`` of one right-padded batch whose
    labels cover the last tokens of each row only (a prompt-completion batch)."""
    torch.manual_seed(0)
    model = tiny_llm.make_model(vocab_size=50, layers=1)
    add_fused_lm_head(model)
    ids = torch.randint(1, 50, (3, 12))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0  # padding
    labels = torch.full_like(ids, -100)
    labels[0, 8:] = ids[0, 8:]
    labels[1, 6:9] = ids[1, 6:9]
    labels[2, 10:] = ids[2, 10:]
    with compact_lm_head(compact):
        out = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    out.loss.backward()
    return out.log_probs.detach(), out.loss.detach(), model.get_input_embeddings().weight.grad


@pytest.fixture
def rows_seen(monkeypatch) -> list[int]:
    """How many positions each call sends through the LM head."""
    seen: list[int] = []
    real = trl_utils._ChunkedLogProbFunction

    class Counting:
        @staticmethod
        def apply(hidden, *args):
            seen.append(hidden.shape[0])
            return real.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    return seen


def test_compact_head_scores_only_labelled_positions_with_the_same_result(rows_seen):
    full = fused_loss(False, rows_seen)
    compact = fused_loss(True, rows_seen)
    assert rows_seen == [3 * 11, 4 + 3 + 2], "every shifted position vs the labelled ones only"
    for a, b in zip(full, compact):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compact_head_restores_trl_afterwards():
    before = trl_utils._use_triton
    with compact_lm_head(True):
        assert trl_utils._use_triton(torch.device("cpu"))
    assert trl_utils._use_triton is before
    with pytest.raises(RuntimeError), compact_lm_head(True):
        raise RuntimeError("a failing training step")
    assert trl_utils._use_triton is before
