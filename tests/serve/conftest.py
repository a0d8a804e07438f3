"""A tiny run directory (items, SIDs from a real RQ-KMeans SID tokenizer, a tiny random llama with the
SID vocabulary in ``midtrain/model``) and a loopback uvicorn server for the serving tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

N_ITEMS = 12
LEVELS, CODEBOOK = 3, 4          # SID tokenizer: 3 levels of 4 codes (the last one random)
VOCAB_LEVELS, VOCAB_CODES = 4, 8  # LLM vocabulary: room for a collision level


def raw_id(i: int) -> str:
    return f"B{i:03d}"


def fake_embed(texts: list[str], dim: int = 16) -> np.ndarray:
    """Deterministic text → unit vector (stands in for the sentence-transformers model)."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        v = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")).standard_normal(dim)
        out[i] = v / np.linalg.norm(v)
    return out


def _corpus() -> list[str]:
    from gr2.prompts.render import PromptConfig, system_message

    texts = [system_message(PromptConfig(item_format="compact", reasoning=r)) for r in (True, False)]
    return texts + ["Purchase history (3 items, oldest first; item 3 is the most recent): Candidates (10 items, "
                    "in random order): Re-rank all 10 candidates for this user. Reply with the JSON object only; "
                    '"recommendations" must list the SIDs {"explanation": "[1] [2]"}'] * 3


def build_run(root: Path, with_tokenizer: bool = True) -> Path:
    import tiny_llm

    from gr2.llm.vocab import add_sid_tokens
    from gr2.prompts.sids import render_sid
    from gr2.sid.config import SidConfig
    from gr2.sid.embed import render_texts
    from gr2.sid.tokenizer import assign, save_tokenizer, train_tokenizer

    items = pd.DataFrame({
        "item_id": range(N_ITEMS),
        "raw_id": [raw_id(i) for i in range(N_ITEMS)],
        "title": [f"Shampoo number {i}" for i in range(N_ITEMS)],
        "categories": [["Beauty", f"Group {i % 3}"] for i in range(N_ITEMS)],
        "description": ["" for _ in range(N_ITEMS)],
    })
    (root / "data").mkdir(parents=True)
    (root / "sid").mkdir()
    items.to_parquet(root / "data" / "items.parquet", index=False)
    cfg = SidConfig(method="rqkmeans", levels=LEVELS, codebook_size=CODEBOOK, random_last_levels=1, progress=False)
    texts, _ = render_texts(items, cfg.text_template, cfg.category_separator)
    x = fake_embed(texts)
    tok = train_tokenizer(x, cfg)
    codes = assign(tok, x, cfg).sids
    if with_tokenizer:
        save_tokenizer(tok, cfg, root / "sid" / "tokenizer.pt")
    pd.DataFrame({"item_id": range(N_ITEMS), "codes": [list(c) for c in codes],
                  "sid": [render_sid(c) for c in codes]}).to_parquet(root / "sid" / "sids.parquet", index=False)

    tokenizer = tiny_llm.make_tokenizer(_corpus(), vocab_size=400)
    model = tiny_llm.make_model(len(tokenizer), max_positions=4096)
    add_sid_tokens(model, tokenizer, levels=VOCAB_LEVELS, codebook_size=VOCAB_CODES)
    out = root / "midtrain" / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return root


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="session")
def make_reranker(run_dir: Path) -> Iterator[Callable[..., object]]:
    """``make_reranker(**ServeConfig fields)`` → a Reranker over the tiny run (closed at the end)."""
    from gr2.serve.reranker import Reranker, ServeConfig

    made = []

    def make(**kw: object) -> Reranker:
        kw.setdefault("max_new_tokens", 24)
        rr = Reranker.load(run_dir, config=ServeConfig(**kw), embed_fn=fake_embed)
        made.append(rr)
        return rr

    yield make
    for rr in made:
        rr.close()


@pytest.fixture(scope="session")
def reranker(make_reranker: Callable[..., object]) -> object:
    return make_reranker()


def start_server(app: object) -> tuple[str, Callable[[], None]]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; returns (base URL, stop)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 20 or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def base_url(reranker: object) -> Iterator[str]:
    from gr2.serve.http import create_app

    url, stop = start_server(create_app(reranker))  # type: ignore[arg-type]
    yield url
    stop()
