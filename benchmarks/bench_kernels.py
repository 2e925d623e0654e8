"""The Stop click -> server disconnect latency on each kernel stack of the matrix (Colab's and
Kaggle's pins, ipykernel 6.29.5, SageMaker's 7.3.0, the newest), each kernel started from its own
virtual environment (tests/kernel_stacks.py, made on first use). The measurement is
bench_frontend's ``clicks()``: a ``%%chat --new --max-tokens 20000`` cell at 50 tokens/s; after
the ReplyView's 5th frame the Stop button's comm click is sent and the time until our server logs
"client disconnected" is taken; then the cell's execute_reply must arrive, saying stopped.

    python benchmarks/bench_kernels.py [--runs N] [stack ...]

Prints a Markdown table; never asserts pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for extra in (_ROOT, _ROOT / "tests", _ROOT / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bench_frontend import _kernel_env, _servers, clicks, clicks_table, run_cell  # noqa: E402
from jupyter_client.blocking.client import BlockingKernelClient  # noqa: E402
from kernel_stacks import STACKS, Stack, kernel_manager, versions  # noqa: E402


@contextlib.contextmanager
def _kernel(stack: Stack) -> Iterator[BlockingKernelClient]:
    km = kernel_manager(stack)
    km.start_kernel(env=_kernel_env())
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        cell = run_cell(kc, "%load_ext jupyter_stream", timeout=60)
        if cell.reply.get("status") != "ok":
            raise RuntimeError(f"%load_ext jupyter_stream failed: {cell.reply}")
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    options = parser.parse_args()
    print(f"`python benchmarks/bench_kernels.py --runs {options.runs}`\n")
    with _servers() as server_for:
        for name in options.stacks:
            stack = STACKS[name]
            held = " · ".join(f"{k} {v}" for k, v in versions(stack).items())
            with _kernel(stack) as kc:
                rows = clicks(kc, server_for, runs=options.runs)
            print(f"**{name}** ({held})\n\n{clicks_table(rows)}\n", flush=True)


if __name__ == "__main__":
    main()
