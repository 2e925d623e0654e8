"""Stop and the slider mid-cell on kernels older than ipykernel 7.4. The only module that knows
ipykernel's internals.

ipykernel >= 7.4 runs comm messages beside an awaiting cell: nothing to do. Before it, a comm
message that arrives while a cell awaits waits behind that cell (6.x: in ``kernel.msg_queue``;
7.0-7.3: as a task blocked on the main shell's asyncio lock), so a Stop click is handled only
when the reply has ended. Here, while a reply's widgets are live, the main shell socket's receive
callback is wrapped: a ``comm_msg`` addressed to one of *those widgets* is handled at once (by the
kernel's own comm handler, under the running cell's parent header); every other message, execute
requests included, goes to the kernel's callback untouched and in order. So no click is lost, no
queued cell is lost or reordered, and no other cell's output is taken. Peeking reads the header
without recording the message's signature, so the kernel can still deserialize it.

It is switched on only for the versions where tests/test_kernel_matrix.py measured it to work
(6.17-6.29 and 7.3); elsewhere ``midcell_notice()`` says what the user must do instead.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["midcell_notice", "serving", "supports_midcell_stop", "unwrap"]

NATIVE = (7, 4)  # ipykernel runs comm messages beside an awaiting cell from here on
# Where the wrapped receive callback is measured to work (the kernel matrix's stacks: 6.17.1,
# 6.29.5, 7.3.0), as [low, high) ranges of (major, minor); an unmeasured release gets the notice.
MEASURED = (((6, 17), (6, 30)), ((7, 3), (7, 4)))

_live: set[str] = set()  # comm ids whose messages are handled at once
_tasks: set[asyncio.Future[Any]] = set()
_wrapped: dict[int, tuple[Any, Callable[..., Any]]] = {}  # id(stream) -> (stream, original)


def ipykernel_version() -> tuple[int, ...] | None:
    """The version of the ipykernel this kernel imported (the installed distribution's when it
    does not say): another one may be installed where the metadata is found first."""
    text = getattr(sys.modules.get("ipykernel"), "__version__", None)
    if not isinstance(text, str):
        text = _installed_version()
    return None if text is None else _parse_version(text)


@cache
def _installed_version() -> str | None:
    try:
        return version("ipykernel")
    except PackageNotFoundError:
        return None


@cache
def _parse_version(text: str) -> tuple[int, ...]:
    """The release numbers that lead ``text``: "7.4.0rc1" is (7, 4, 0), never (7, 4, 1)."""
    match = re.match(r"\d+(?:\.\d+){0,2}", text)
    return () if match is None else tuple(int(part) for part in match.group().split("."))


def _kernel() -> Any:
    """The running ipykernel kernel, if this is one."""
    if "ipykernel" not in sys.modules:
        return None
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


def _shell_stream(kernel: Any) -> Any:
    """The ZMQStream on the main thread that receives the main shell's messages."""
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is not None:  # 7.x: the shell channel thread forwards them over an inproc pair
        pair = getattr(getattr(thread, "manager", None), "_shell_channel_to_main", None)
        return getattr(pair, "to_stream", None)
    return getattr(kernel, "shell_stream", None)


def _measured(found: tuple[int, ...]) -> bool:
    return any(low <= found[:2] < high for low, high in MEASURED)


def supports_midcell_stop() -> bool:
    """Whether Stop and the slider act while a cell awaits the reply, in this kernel."""
    found = ipykernel_version()
    kernel = _kernel()
    if found is None or kernel is None:
        return False
    if found[:2] >= NATIVE:
        return True
    stream = _shell_stream(kernel)
    return (
        _measured(found)
        and stream is not None
        and getattr(stream, "_recv_callback", None) is not None
        and "comm_msg" in getattr(kernel, "shell_handlers", {})
    )


def midcell_notice() -> str | None:
    """What the widgets say when Stop cannot act mid-cell here (None when it can)."""
    if _kernel() is None or supports_midcell_stop():
        return None
    found = ".".join(map(str, ipykernel_version() or ())) or "?"
    return f"Stop acts when this cell ends on ipykernel {found} — Kernel → Interrupt stops now"


@contextmanager
def serving(comm_ids: Iterable[str]) -> Iterator[None]:
    """While inside, comm messages to ``comm_ids`` are handled even while a cell awaits."""
    ids = [i for i in comm_ids if i]
    kernel = _kernel()
    needed = kernel is not None and supports_midcell_stop()
    found = ipykernel_version()
    if not needed or found is None or found[:2] >= NATIVE:
        yield
        return
    _wrap(kernel)
    _live.update(ids)
    try:
        yield
    finally:
        _live.difference_update(ids)


def _wrap(kernel: Any) -> None:
    stream = _shell_stream(kernel)
    if id(stream) in _wrapped:
        return
    original: Callable[..., Any] = stream._recv_callback
    session = kernel.session

    def on_recv(frames: list[Any]) -> Any:
        if _live:
            try:
                message = _ours(session, frames)
            except Exception:  # not ours to judge: the kernel reports bad messages itself
                message = None
            if message is not None:
                _handle(kernel, *message)
                return None
        return original(frames)

    stream.on_recv(on_recv, copy=False)
    _wrapped[id(stream)] = (stream, original)


def _ours(session: Any, frames: list[Any]) -> tuple[list[bytes], dict[str, Any]] | None:
    """The message, deserialized, if it is a comm_msg to a live widget; else None, and the
    frames untouched (the header is read without recording the signature)."""
    idents, rest = session.feed_identities(frames, copy=False)
    header = session.deserialize(list(rest), content=False, copy=False)["header"]
    if header.get("msg_type") != "comm_msg" or header.get("subshell_id"):
        return None
    content = session.unpack(bytes(rest[4].bytes if hasattr(rest[4], "bytes") else rest[4]))
    if content.get("comm_id") not in _live:
        return None
    message: dict[str, Any] = session.deserialize(list(rest), content=True, copy=False)
    return idents, message


def _handle(kernel: Any, idents: list[bytes], message: dict[str, Any]) -> None:
    try:
        result = kernel.shell_handlers["comm_msg"](kernel.shell_stream, idents, message)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    except Exception:
        kernel.log.error("Exception in comm_msg handler:", exc_info=True)


def unwrap() -> None:
    """Give the kernel its own receive callbacks back (``%unload_ext``)."""
    for stream, original in _wrapped.values():
        stream.on_recv(original, copy=False)
    _wrapped.clear()
    _live.clear()
