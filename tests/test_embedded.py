"""The embedded default: with nothing configured, streams go to a server started in-process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from jupyter_stream import StopReason, stream_chat
from jupyter_stream._endpoint import resolve_endpoint
from jupyter_stream.server import embedded_base_url

WAIT = 30  # seconds: a guard against hangs, never a timing assertion


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def test_nothing_configured_means_the_embedded_demo_server() -> None:
    endpoint = resolve_endpoint()
    assert endpoint.base_url == embedded_base_url()
    assert endpoint.base_url.startswith("http://127.0.0.1:")
    assert endpoint.api_key is None
    stream = stream_chat("hi", max_tokens=3)
    assert len(list(stream)) == 3
    assert stream.model == "demo" and stream.stop_reason is StopReason.LENGTH


def test_it_starts_once_even_when_many_threads_ask_at_once() -> None:
    urls: list[str] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        urls.append(embedded_base_url())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(urls) == 8 and len(set(urls)) == 1


def test_it_starts_once_per_process_prints_nothing_and_stops_with_the_process() -> None:
    done = run_python(
        """
        import atexit, threading

        def check():  # registered first, so it runs after jupyter_stream's own atexit
            alive = [t.name for t in threading.enumerate() if "server" in t.name]
            print("alive at exit:", alive)

        atexit.register(check)

        import asyncio
        from jupyter_stream import astream_chat, stream_chat
        from jupyter_stream.server import embedded_base_url

        first = embedded_base_url()
        print(repr("".join(stream_chat("hi", max_tokens=4))))

        async def main():
            stream = astream_chat("hi", max_tokens=4)
            return "".join([delta async for delta in stream])

        print(repr(asyncio.run(main())))
        print("same server:", embedded_base_url() == first)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing from uvicorn or from us reaches a notebook's stderr
    lines = done.stdout.splitlines()
    assert lines == [
        repr("# Hi\n\nYou"),
        repr("# Hi\n\nYou"),
        "same server: True",
        "alive at exit: []",
    ]


def test_a_stream_left_open_does_not_hold_the_process_at_exit() -> None:
    done = run_python(
        """
        from jupyter_stream import stream_chat

        stream = stream_chat("a long answer")
        print(next(stream), flush=True)
        """  # exits with the stream (and the server's connection) still open
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "#\n" and done.stderr == ""
