"""SID vocabulary: one new LLM token per (level, code) plus ``<|sid_begin|>`` / ``<|sid_end|>``.

An item's semantic ID ``(97, 168, 137, 135)`` is shown to the model as
``<|sid_begin|><s_a_97><s_b_168><s_c_137><s_d_135><|sid_end|>`` (docs/method.md §3); rendering and parsing
live in :mod:`gr2.prompts.sids`, re-exported here.

Tokens are added as *added tokens* with ``normalized=False`` and no stripping, so the tokenizer matches
each one whole before its own model runs: every SID token is exactly one id and is never split or
merged with neighbouring text. They are deliberately **not** ``special``: ``decode(...,
skip_special_tokens=True)`` (the usual way to drop EOS/padding from generations) keeps them, so
generated SIDs survive decoding.

New embedding rows (docs/method.md §4: "new SID tokens get fresh embeddings trained by next-token
prediction"), ``init=``:

* ``"mean"`` (default): the mean of the existing rows plus small Gaussian noise, per dimension
  ``noise_std × std`` of the existing rows, drawn from a generator seeded with ``seed`` (independent of
  the global RNG). The mean keeps each new token's initial logit near the average logit, so the model
  neither favours nor starves the new tokens before training (Hewitt 2021, "Initializing new word
  embeddings for pretrained language models"); the noise makes the 1,026 new tokens distinguishable
  from step one.
* ``"text"``: the mean of the embeddings of the pieces the *original* tokenizer splits the token's text
  into (``"<s_a_97>"`` → ``<``, ``s``, ``_a``, ``_``, ``97``, ``>`` …), no noise: each token starts close
  to how the model read its spelling.
* ``"catalogue"`` (needs ``catalogue``: each item's SID and text): each token starts as what the items
  carrying it are about, in the model's own embedding space. An item's vector is the mean embedding of
  its text's pieces (original tokenizer); a code's row is the mean over the items with that code at
  that level, its deviation from the mean of all items' vectors rescaled to the median deviation of
  the existing rows from their mean (averaging many items shrinks it towards the centre, where every
  code would look alike). Tokens no item carries get ``"mean"``. With tied embeddings this is also
  the output side: a context about hair care raises the logits of the codes of hair-care items
  before any training.

Untied output embeddings (``lm_head``) get the same treatment from their own rows (and a bias, if any,
the mean of the existing bias); tied embeddings are resized together and stay tied. Rows are written
only for tokens this call adds (or whose rows lie beyond the old matrix), so calling again is a no-op
and never overwrites trained rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from gr2.prompts.sids import (
    LEVEL_LETTERS,
    SID_BEGIN,
    SID_END,
    parse_sid,
    render_sid,
    sid_token,
    sid_vocabulary,
)

INIT_METHODS = ("mean", "text", "catalogue")
_PIECE = re.compile(r"<\|sid_begin\|>|<\|sid_end\|>|<s_[a-z]_\d+>")


def sid_tokens(levels: int = 4, codebook_size: int = 256) -> list[str]:
    """``<s_a_0>`` … ``<s_a_{C-1}>``, ``<s_b_0>`` …, one block per level, then ``<|sid_begin|>``,
    ``<|sid_end|>`` (levels 1–5 use the letters a–e)."""
    if not 1 <= levels <= len(LEVEL_LETTERS):
        raise ValueError(f"levels must be in 1..{len(LEVEL_LETTERS)}, got {levels}")
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    return sid_vocabulary(levels, codebook_size) + [SID_BEGIN, SID_END]


def _added_token(text: str) -> Any:
    from tokenizers import AddedToken

    return AddedToken(text, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)


def _tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    inp = model.get_input_embeddings()
    return out is None or out.weight is inp.weight or out.weight.data_ptr() == inp.weight.data_ptr()


@torch.no_grad()
def _init_mean(weight: torch.Tensor, ref_mask: torch.Tensor, rows: list[int], noise_std: float,
               generator: torch.Generator) -> None:
    ref = weight[ref_mask].to(torch.float32)
    mean = ref.mean(0)
    std = ref.std(0) if ref.shape[0] > 1 else torch.zeros_like(mean)
    noise = torch.randn((len(rows), weight.shape[1]), generator=generator, dtype=torch.float32)
    new = mean + noise_std * std * noise
    weight[torch.tensor(rows, dtype=torch.long)] = new.to(weight.dtype)


@torch.no_grad()
def _init_text(weight: torch.Tensor, ref_mask: torch.Tensor, rows: list[int], pieces: list[list[int]]) -> None:
    fallback = weight[ref_mask].to(torch.float32).mean(0)
    for row, ids in zip(rows, pieces):
        ids = [i for i in ids if 0 <= i < ref_mask.shape[0] and ref_mask[i]]
        value = weight[torch.tensor(ids, dtype=torch.long)].to(torch.float32).mean(0) if ids else fallback
        weight[row] = value.to(weight.dtype)


@torch.no_grad()
def _init_catalogue(weight: torch.Tensor, ref_mask: torch.Tensor, rows: list[tuple[int, str]],
                    members: dict[str, list[int]], item_pieces: list[list[int]], noise_std: float,
                    generator: torch.Generator) -> None:
    ref = weight[ref_mask].to(torch.float32)
    centre = ref.mean(0)
    spread = float((ref - centre).norm(dim=1).median())
    vectors = torch.stack([weight[torch.tensor(ids, dtype=torch.long)].to(torch.float32).mean(0) if ids else centre
                           for ids in item_pieces])
    items_centre = vectors.mean(0)
    plain = [row for row, token in rows if not members.get(token)]
    if plain:
        _init_mean(weight, ref_mask, plain, noise_std, generator)
    for row, token in rows:
        if members.get(token):
            dev = vectors[torch.tensor(members[token], dtype=torch.long)].mean(0) - items_centre
            weight[row] = (centre + dev * (spread / max(float(dev.norm()), 1e-8))).to(weight.dtype)


def add_sid_tokens(
    model: Any,
    tokenizer: Any,
    levels: int = 4,
    codebook_size: int = 256,
    init: str = "mean",
    noise_std: float = 0.1,
    seed: int = 0,
    catalogue: Sequence[tuple[str, str]] | None = None,
) -> int:
    """Add the SID tokens to ``tokenizer``, grow ``model``'s embeddings and initialise the new rows.

    Returns the number of tokens added (0 when they are all already there: idempotent). See the module
    docstring for ``init`` (``"mean"`` | ``"text"`` | ``"catalogue"``, which needs ``catalogue``:
    ``(sid string, text)`` per item), ``noise_std`` (relative to the per-dimension std of the existing
    rows; for the rows ``"mean"`` initialises) and ``seed``.
    """
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}")
    if init == "catalogue" and not catalogue:
        raise ValueError("init='catalogue' needs the catalogue: (sid, text) for every item")
    tokens = sid_tokens(levels, codebook_size)
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    old_tok_len = len(tokenizer)
    pieces: dict[str, list[int]] = {}
    if init == "text":  # tokenise the spelling with the tokenizer as it was before
        pieces = {t: list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in missing}
    members: dict[str, list[int]] = {}
    item_pieces: list[list[int]] = []
    if init == "catalogue":  # each item's text with the tokenizer as it was before; codes → items
        for n, (sid, text) in enumerate(catalogue or ()):
            item_pieces.append(list(tokenizer(str(text), add_special_tokens=False)["input_ids"]))
            for level, code in enumerate(parse_sid(sid)):
                members.setdefault(sid_token(level, code), []).append(n)
    if missing:
        tokenizer.add_tokens([_added_token(t) for t in missing])
    ids = [int(i) for i in tokenizer.convert_tokens_to_ids(tokens)]
    missing_set = set(missing)

    emb = model.get_input_embeddings()
    old_rows = int(emb.weight.shape[0])
    tied = _tied(model)
    rows = [(i, t) for i, t in zip(ids, tokens) if t in missing_set or i >= old_rows]
    needed = max(ids) + 1
    if needed > old_rows:
        model.resize_token_embeddings(needed, mean_resizing=False)
        if tied:
            model.tie_weights()
    if not rows:
        return len(missing)

    # Reference rows: the vocabulary as it was (ids below the old tokenizer length that existed in the
    # old matrix), minus any SID ids (they are either new or already trained on SIDs).
    emb = model.get_input_embeddings()
    n = int(emb.weight.shape[0])
    ref_mask = torch.zeros(n, dtype=torch.bool)
    ref_mask[: min(old_tok_len, old_rows)] = True
    ref_mask[torch.tensor(ids, dtype=torch.long)] = False
    if not bool(ref_mask.any()):
        raise ValueError("the model has no existing embedding rows to initialise the SID tokens from")
    row_ids = [i for i, _ in rows]
    generator = torch.Generator().manual_seed(int(seed))
    weights = [emb.weight]
    out = model.get_output_embeddings()
    if out is not None and not _tied(model):
        weights.append(out.weight)
    for weight in weights:
        if init == "mean":
            _init_mean(weight.data, ref_mask, row_ids, noise_std, generator)
        elif init == "catalogue":
            _init_catalogue(weight.data, ref_mask, rows, members, item_pieces, noise_std, generator)
        else:
            _init_text(weight.data, ref_mask, row_ids, [pieces.get(t, []) for _, t in rows])
    bias = getattr(out, "bias", None) if out is not None else None
    if bias is not None and bias.shape[0] == n:
        with torch.no_grad():
            bias.data[torch.tensor(row_ids, dtype=torch.long)] = bias.data[ref_mask].mean()
    return len(missing)


def _token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise KeyError(f"{token!r} is not in the tokenizer's vocabulary; call add_sid_tokens() first")
    return int(tid)


def sid_token_ids(tokenizer: Any, sid_string: str) -> list[int]:
    """Token ids of an SID string such as ``<|sid_begin|><s_a_97><s_b_168><|sid_end|>``: one id per
    SID token, exactly (no BOS, no text pieces). Raises ``ValueError`` for anything that is not a run
    of SID tokens and ``KeyError`` for a token missing from the tokenizer."""
    text = sid_string.strip()
    pos = 0
    found: list[str] = []
    for m in _PIECE.finditer(text):
        if m.start() != pos:
            raise ValueError(f"not an SID string: {sid_string!r} (unexpected text at {pos})")
        found.append(m.group(0))
        pos = m.end()
    if pos != len(text) or not found:
        raise ValueError(f"not an SID string: {sid_string!r}")
    return [_token_id(tokenizer, t) for t in found]


def sid_id_table(tokenizer: Any, levels: int = 4, codebook_size: int = 256) -> list[list[int]]:
    """``table[level][code]`` = token id of ``sid_token(level, code)`` (for constrained decoding)."""
    return [[_token_id(tokenizer, sid_token(level, code)) for code in range(codebook_size)]
            for level in range(levels)]


def sid_special_ids(tokenizer: Any) -> tuple[int, int]:
    """``(id of <|sid_begin|>, id of <|sid_end|>)``."""
    return _token_id(tokenizer, SID_BEGIN), _token_id(tokenizer, SID_END)


def codes_to_ids(tokenizer: Any, codes: Sequence[int], wrap: bool = True) -> list[int]:
    """Token ids of the SID with ``codes`` (wrapped in begin/end by default)."""
    return sid_token_ids(tokenizer, render_sid(codes, wrap=wrap))


__all__ = [
    "INIT_METHODS", "SID_BEGIN", "SID_END", "add_sid_tokens", "codes_to_ids", "parse_sid", "render_sid",
    "sid_id_table", "sid_special_ids", "sid_token", "sid_token_ids", "sid_tokens",
]
