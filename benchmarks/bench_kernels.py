"""The Stop click -> server disconnect latency on each kernel stack of the matrix (Colab's and
Kaggle's pins, ipykernel 6.29.5, SageMaker's 7.3.0, the newest), each kernel started from its own
virtual environment (tests/kernel_stacks.py, made on first use). The measurement is the
harness's ``clicks()``, as in bench_frontend: a ``%%chat --new --max-tokens 20000`` cell at
50 tokens/s; after the ReplyView's 5th frame the Stop button's comm click is sent and the time
until our server logs "client disconnected" is taken; then the cell's execute_reply must
arrive, saying stopped.

    python benchmarks/bench_kernels.py [--runs N] [stack ...]

Prints a Markdown table; never asserts pass/fail.
"""

from __future__ import annotations

import argparse

import _harness as h

h.tests_on_path()
from kernel_stacks import STACKS, kernel_manager, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    options = parser.parse_args()
    print(f"`python benchmarks/bench_kernels.py --runs {options.runs}`\n")
    with h.demo_servers() as server_for:
        for name in options.stacks:
            stack = STACKS[name]
            held = " · ".join(f"{k} {v}" for k, v in versions(stack).items())
            with h.kernel(manager=kernel_manager(stack)) as kc:
                rows = h.clicks(kc, server_for, runs=options.runs)
            print(f"**{name}** ({held})\n\n{h.clicks_table(rows)}\n", flush=True)


if __name__ == "__main__":
    main()
