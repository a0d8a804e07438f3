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


def test_group_by_length_batches_similar_lengths(tmp_path, monkeypatch):
    """32 short and 32 long examples, batches of two (TRL pads a batch to its longest example): grouped,
    at most one batch per mega-batch (4 of them) mixes a short and a long one; random, about half do."""
    import pandas as pd
    from trl import SFTTrainer

    from gr2.midtrain.config import MidtrainConfig
    from gr2.training.loop import run_phase, sft_args

    words = ["Items", "a", "user", "bought", "oldest", "first", "Next", "item", "Purchase", "history"]
    rows = [(" ".join(words[:2]), " item") if i % 2 else (" ".join(words * 4), " item") for i in range(64)]
    df = pd.DataFrame(rows, columns=["prompt", "completion"])
    mixed = {}
    real = SFTTrainer.training_step

    def spy(self, model, inputs, *a, **k):
        lengths = inputs["attention_mask"].sum(dim=1)
        mixed.setdefault(self.args.train_sampling_strategy, []).append(int(lengths.max() - lengths.min()) > 10)
        return real(self, model, inputs, *a, **k)

    monkeypatch.setattr(SFTTrainer, "training_step", spy)
    for grouped in (True, False):
        tok = tiny_llm.make_tokenizer([" ".join(words)] * 3)
        model = tiny_llm.make_model(len(tok))
        cfg = MidtrainConfig(batch_size=2, max_seq_len=128, save_steps=100, logging_steps=1, group_by_length=grouped)
        args = sft_args(cfg, tmp_path / str(grouped), 32, 1e-4, 0.0, 0.0, "cpu")
        run_phase(model, tok, df, args, tmp_path / f"tb{grouped}")
    assert len(mixed["group_by_length"]) == len(mixed["random"]) == 32
    assert sum(mixed["group_by_length"]) <= 4, "at most one mixed batch per mega-batch"
    assert sum(mixed["random"]) >= 10


@pytest.mark.slow
def test_torch_compile_trains_like_eager(tmp_path):
    """``torch_compile``: the same losses as eager PyTorch (compiled kernels reorder float sums only)
    over a few steps of the compact-head path. Slow: the compile takes ~30 s here."""
    import pandas as pd

    from gr2.midtrain.config import MidtrainConfig
    from gr2.training.loop import run_phase, sft_args

    words = ["Items", "a", "user", "bought", "oldest", "first", "Next", "item", "Purchase", "history"]
    df = pd.DataFrame([(" ".join(words[: 3 + i % 5]), " item") for i in range(16)], columns=["prompt", "completion"])
    from torch._dynamo.utils import counters

    losses, graphs = {}, {}
    for compiled in (False, True):
        counters.clear()
        tok = tiny_llm.make_tokenizer([" ".join(words)] * 3)
        model = tiny_llm.make_model(len(tok)).train()
        cfg = MidtrainConfig(batch_size=4, max_seq_len=64, save_steps=100, logging_steps=1, torch_compile=compiled)
        args = sft_args(cfg, tmp_path / str(compiled), 4, 1e-3, 0.0, 0.0, "cpu")
        assert args.torch_compile is compiled
        _, info = run_phase(model, tok, df, args, tmp_path / f"tb{compiled}")
        losses[compiled] = [h["loss"] for h in info["log"] if "loss" in h]
        graphs[compiled] = counters["stats"]["unique_graphs"]
    assert graphs == {False: 0, True: graphs[True]} and graphs[True] > 0  # dynamo compiled the model
    assert len(losses[True]) == 4 and losses[True] == pytest.approx(losses[False], rel=1e-4)
