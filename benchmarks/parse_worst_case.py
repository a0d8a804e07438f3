"""Seconds the answer parser (:func:`gr2.prompts.parse.parse_output`) takes on crafted hostile answers
of growing length: nested single-quoted objects (Python's literal parser), nested double-quoted
objects (JSON) and bare nested braces around one "recommendations". Linear growth is the target
(issue #19: a crafted 20 KB answer once took seconds).

    .venv/bin/python benchmarks/parse_worst_case.py
"""

from __future__ import annotations

import time

from gr2.prompts.parse import parse_output

SIDS = [f"<s_a_{i}><s_b_{i}><s_c_{i}><s_d_{i}>" for i in range(10)]
SHAPES = {
    "nested single-quoted": lambda n: "{'recommendations': [1, 2, {'y': 'a'}], 'z': " * n + "0" + "}" * n,
    "nested double-quoted": lambda n: '{"recommendations": [1, 2, {"y": "a"}], "z": ' * n + "0" + "}" * n,
    "nested braces": lambda n: "{" * (n * 10) + "recommendations" + "}" * (n * 10),
}


def main() -> None:
    for name, make in SHAPES.items():
        for n in (400, 1000, 2000, 4000):
            text = make(n)
            start = time.perf_counter()
            status = parse_output(text, SIDS).status
            print(f"{name:22s} {len(text):>8,} chars  {time.perf_counter() - start:7.3f} s  {status}")


if __name__ == "__main__":
    main()
