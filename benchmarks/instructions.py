"""Instructions per chunk, end to end, counted by valgrind's callgrind: a figure that does not vary
with the machine's load, unlike seconds.

    python benchmarks/instructions.py        (needs valgrind: apt-get install -y valgrind)

Each client streams N chunks from ``firehose.py`` (in its own process) under callgrind, once with
N = 2 and once with N = 20,000; the difference over 19,998 is the cost of one chunk, start-up and
imports excluded.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile

import _harness as h

N = 20_000
MESSAGES = [{"role": "user", "content": "x"}]


async def _astream_chat(url: str, n: int) -> int:
    from jupyter_stream import astream_chat

    count = 0
    async for _ in astream_chat(MESSAGES, model="bench", base_url=url, max_tokens=n):
        count += 1
    return count


async def _raw_httpx(url: str, n: int) -> int:
    import httpx

    payload = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": n,
        "stream_options": {"include_usage": True},
    }
    count = 0
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", f"{url}/chat/completions", json=payload) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    count += 1
    return count


CLIENTS = {"astream_chat": _astream_chat, "raw httpx aiter_lines + json.loads": _raw_httpx}


def _count(client: str, url: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg", sys.executable,
             __file__, "--client", client, url, str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))  # type: ignore[union-attr]


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        client, url, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        received = asyncio.run(CLIENTS[client](url, n))
        assert received == n, (client, received)
        return
    print(h.table([("client", h.L), ("instructions per chunk", h.R)], []), flush=True)
    with h.firehose() as server:
        for client in CLIENTS:
            url = server.base_url
            per_chunk = (_count(client, url, N) - _count(client, url, 2)) / (N - 2)
            print(f"| {client} | {per_chunk:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
