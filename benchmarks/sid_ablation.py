"""The SID ablation on Amazon Beauty: 2^5 on/off grid of the paper's techniques × seeds.

    python benchmarks/sid_ablation.py [--run-dir runs/sid-beauty] [--seeds 0 1] [--epochs 5] [--threads 1]

Runs ``gr2.sid.ablation.run_ablation`` (RQ-VAE cells, plus RQ-KMeans with the random last level
off/on) and prints ``sid/ablation.md``. Reuses the embedding cache of ``benchmarks/sid_beauty.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sid_beauty import make_beauty_run  # noqa: E402

from gr2.sid.config import SidConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "sid-beauty"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    run = make_beauty_run(Path(args.run_dir))
    from gr2.sid.ablation import run_ablation

    t0 = time.perf_counter()
    run_ablation(run, SidConfig(progress=False, num_threads=args.threads), seeds=tuple(args.seeds),
                 epochs=args.epochs, progress=lambda msg: print(msg, flush=True))
    print((run.path / "sid" / "ablation.md").read_text())
    print(f"ablation: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
