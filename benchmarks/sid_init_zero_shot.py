"""Does an SID-token initialisation read items before any training? The base model with the SID
tokens added (``gr2.llm.vocab.add_sid_tokens``, one run per ``init``) direct-scores a run's validation
lists, shown shuffled (so only the items can help) and in pre-rank order, with the run's trained
prompt format; R@1 / N@5 against the pre-rank order's N@5 on the same lists (a random order: N@5
0.295, R@1 0.100 at K = 10).

    .venv/bin/python benchmarks/sid_init_zero_shot.py --run-dir runs/beauty-medium --inits mean catalogue
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gr2.lists import sample_lists
from gr2.llm.registry import load
from gr2.llm.vocab import add_sid_tokens
from gr2.midtrain.stage import sid_catalogue
from gr2.midtrain.tasks import sid_shape
from gr2.prompts.items import load_item_texts, trained_prompt
from gr2.runs import RunDir
from gr2.sft.curve import val_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="a run with data, sid and candidates")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--inits", nargs="+", default=["mean", "catalogue"])
    ap.add_argument("--val-lists", type=int, default=100)
    args = ap.parse_args()
    run = RunDir(Path(args.run_dir))
    items = load_item_texts(run)
    prompt = trained_prompt(run.path, "sft")
    val = sample_lists(run, "val", args.val_lists, 0)
    catalogue = sid_catalogue(run)
    levels, codebook_size = sid_shape(run)
    for init in args.inits:
        model, tok = load(args.model)
        add_sid_tokens(model, tok, levels=levels, codebook_size=codebook_size, init=init,
                       catalogue=catalogue if init == "catalogue" else None)
        for order in ("shuffled", "prerank"):
            print(init, order, val_metrics(model, tok, val, items, dataclasses.replace(prompt, order=order)), flush=True)


if __name__ == "__main__":
    main()
