"""A tiny random llama and a tiny byte-level BPE tokenizer, built offline, for tests that need a
real transformers model but not a trained one."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


def make_tokenizer(corpus: list[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<eos>")


def make_model(vocab_size: int, tied: bool = True, layers: int = 1, max_positions: int = 512) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                      tie_word_embeddings=tied, eos_token_id=0, pad_token_id=0, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def save_student(folder):
    """A tiny llama + tokenizer that knows the prompt words, saved as a model folder (the student of
    the end-to-end tests); returns ``folder``."""
    corpus = ["Items a user bought, oldest first: Next item: Purchase history Candidates recommendations "
              "explanation Item number Beauty Group Kind 0 1 2 3 4 5 6 7 8 9 [ ] { } \" , : < > _ s a b c d"] * 3
    tok = make_tokenizer(corpus, vocab_size=400)
    model = make_model(len(tok), max_positions=2048)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
