"""Seconds of one listwise training step (forward ``direct_logprobs`` + ``listwise_loss`` + backward)
with every weight trained and with only the top N decoder layers (``sft.train_top_layers``), on
synthetic lists shaped like the medium profile's (~250 prompt tokens, K = 10 SID paths of 5 tokens).

    .venv/bin/python benchmarks/listwise_step_time.py --lists 4 --top 8 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

from gr2.llm.registry import load
from gr2.llm.scoring import ScoreInput, direct_logprobs
from gr2.sft.listwise import listwise_loss
from gr2.training.setup import train_top_layers


def step(model, batch: list[ScoreInput]) -> tuple[float, float]:
    t0 = time.perf_counter()
    loss, _ = listwise_loss(direct_logprobs(model, batch), [0] * len(batch), [[0.0] * 10] * len(batch))
    t1 = time.perf_counter()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--lists", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=250)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model, _ = load(args.model)
    model.train()
    g = torch.Generator().manual_seed(0)
    batch = [ScoreInput(torch.randint(0, 40000, (args.prompt_tokens,), generator=g).tolist(),
                        [torch.randint(0, 40000, (5,), generator=g).tolist() for _ in range(10)])
             for _ in range(args.lists)]
    for label in ("every weight", f"top {args.top} layers"):
        if label != "every weight":
            train_top_layers(model, args.top)
        step(model, batch)  # warm-up
        times = [step(model, batch) for _ in range(args.repeats)]
        fwd = sorted(t[0] for t in times)[len(times) // 2]
        bwd = sorted(t[1] for t in times)[len(times) // 2]
        print(f"{label}: {args.lists} lists, forward {fwd:.2f} s, backward {bwd:.2f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
