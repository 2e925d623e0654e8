"""A private event loop on a daemon thread, for the synchronous API.

Synchronous callers (scripts, a plain notebook cell) must not run a loop of their own inside a
running one, and patching the kernel's loop with ``nest_asyncio`` loses widget clicks and queued
cells on ipykernel 7. So sync streams run here, and hand their deltas over under a lock.
"""

from __future__ import annotations

import asyncio
import atexit
import threading

__all__ = ["private_loop"]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def private_loop() -> asyncio.AbstractEventLoop:
    """The process's private loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is not None and _thread is not None and _thread.is_alive():
            return _loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_run, args=(loop, ready), name="jupyter_stream-loop", daemon=True
        )
        thread.start()
        ready.wait()
        _loop, _thread = loop, thread
        return loop


def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())  # closes the pooled client
        finally:
            loop.close()


@atexit.register
def _stop() -> None:
    with _lock:
        loop, thread = _loop, _thread
    if loop is not None and thread is not None and thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
