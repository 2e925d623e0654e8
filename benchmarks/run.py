"""All of jupyter_stream's benchmarks, one after the other: ``python benchmarks/run.py [--quick]``.

Figures, never pass/fail. Install the comparison libraries first: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import sys

import bench_apis
import bench_policies
import bench_server
import bench_sse
import bench_stream


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    print("## SSE decoding\n")
    bench_sse.main(["--repeat", "3"] if quick else [])
    print()
    bench_stream.main(["--quick"] if quick else [])
    print()
    bench_apis.main(["--quick"] if quick else [])
    print()
    bench_policies.main(["--quick"] if quick else [])
    print()
    bench_server.main(["--quick"] if quick else [])


if __name__ == "__main__":
    main()
