"""What the benchmarks share: figures and Markdown tables, interleaved timing rounds, server
processes (the firehose, ``jupyter-stream serve``), and a real kernel driven cell by cell.

Every ``bench_*.py`` imports it first (``import _harness``, found beside the script): that puts
this checkout on ``sys.path``, so a script runs from a checkout without installing the package.
Heavy imports (jupyter_client, the server) wait for the functions that need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import KernelManager

    from jupyter_stream.server import BackgroundServer

Row = dict[str, Any]
Message = dict[str, Any]
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
DISCONNECTED = "client disconnected"  # how the server's `ended` log names a client that left


def tests_on_path() -> None:
    """Make ``tests/``'s helpers (kernel_stacks) importable."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))


# -- figures and tables ---------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(values: list[float]) -> str:
    """``median / max``, whole numbers."""
    if not values:
        return "—"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most of ``times`` that fall in any window [t, t + width)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def package_version(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"no {name}"


def versions(*names: str) -> str:
    return " · ".join(package_version(name) for name in names)


def machine() -> str:
    return f"os.cpu_count() = {os.cpu_count()} · {platform.system()} {platform.machine()}"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How the benchmark was run, for its header."""
    args = list(argv if argv is not None else sys.argv[1:])
    return f"python benchmarks/{script} {' '.join(args)}".rstrip()


def parser(doc: str | None, parts: Sequence[str], quick: str = "a small smoke run") -> Any:
    """The script's argument parser (its docstring's first paragraph the description), with
    ``--quick`` and ``--only PART``; the script adds its own options."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--only", choices=parts, help="run one part")
    return parser


def section(title: str, text: str) -> None:
    """A ``###`` heading and its text (a table), flushed: a long run shows each as it ends."""
    print(f"### {title}\n\n{text}\n", flush=True)


R, L = "---:", "---"  # a column of numbers (right-aligned), of text


def table(columns: str, rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: ``columns`` are titles joined by " | ", a text column's starting with
    "<" (the others are numbers, right-aligned); each row's cells are shown as str."""
    spec = [(t[1:], L) if t.startswith("<") else (t, R) for t in columns.split(" | ")]
    lines = [
        "| " + " | ".join(title for title, _ in spec) + " |",
        "| " + " | ".join(align for _, align in spec) + " |",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- timing ---------------------------------------------------------------------------------------


class Runner:
    """One event loop kept across ``run()`` calls (``asyncio.Runner`` is Python 3.11+), so that
    pooled connections stay warm; ``close()`` shuts async generators down (which closes
    jupyter_stream's pooled client) and closes the loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()


class Problem(Exception):
    """A case's own account of what went wrong, shown as it is."""


def interleaved(
    cases: Sequence[K],
    measure: Callable[[K], T],
    *,
    repeats: int,
    warmup: int = 1,
    skip: dict[K, str] | None = None,
) -> tuple[dict[K, list[T]], dict[K, str]]:
    """Measure every case once a round, ``warmup`` rounds then ``repeats`` timed ones: a slow
    spell of the machine falls on all the cases, not on one. ``gc.collect()`` before each run.
    A case that raises is reported (``Problem`` as is, else its class and message) and not run
    again. Returns the timed rounds' samples and the problems; ``skip`` starts the problems."""
    samples: dict[K, list[T]] = {case: [] for case in cases}
    problems: dict[K, str] = dict(skip or {})
    for round_ in range(warmup + repeats):
        for case in cases:
            if case in problems:
                continue
            gc.collect()
            try:
                sample = measure(case)
            except Problem as exc:
                problems[case] = str(exc)
                continue
            except Exception as exc:  # report it in the table, keep going
                problems[case] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if round_ >= warmup:
                samples[case].append(sample)
    return samples, problems


# -- server processes -----------------------------------------------------------------------------


@dataclass
class Process:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)  # what it wrote on the watched stream

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def problems(self) -> list[str]:
        words = ("Traceback", "Error", "error", "WARNING", "exception")
        return [line for line in self.lines if any(w in line for w in words)]


@contextlib.contextmanager
def spawn(
    argv: list[str], port_of: Callable[[str], int | None], *, watch: str
) -> Iterator[Process]:
    """Start a subprocess; yield it once ``port_of`` found its port in a line of ``watch``
    ("stdout" or "stderr"), which a thread keeps draining. Stopped (stdin closed, SIGTERM, then
    SIGKILL) on exit."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE if watch == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if watch == "stderr" else None,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def drain() -> None:
        stream = proc.stdout if watch == "stdout" else proc.stderr
        assert stream is not None
        for line in stream:
            if len(lines) < 100_000:
                lines.append(line.rstrip("\n"))
            if not port:
                p = port_of(line)
                if p is not None:
                    port.append(p)
                    found.set()
        found.set()

    threading.Thread(target=drain, name=f"drain-{proc.pid}", daemon=True).start()
    try:
        if not found.wait(STARTUP_TIMEOUT) or not port:
            tail = "\n".join(lines[-20:])
            raise RuntimeError(f"{argv[1:3]} did not print its port:\n{tail}")
        yield Process(proc, port[0], lines)
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the firehose ends when its stdin closes
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def firehose() -> contextlib.AbstractContextManager[Process]:
    """benchmarks/firehose.py in a process of its own (it must not share the client's GIL)."""

    def port_of(line: str) -> int | None:
        return int(line.split()[1]) if line.startswith("PORT ") else None

    argv = [sys.executable, str(HERE / "firehose.py"), "--port", "0"]
    return spawn(argv, port_of, watch="stdout")


def _root_url(base_url: str) -> str:
    return base_url.rsplit("/v1", 1)[0]


def fetch_disconnects(
    base_url: str, prefix: str, expect: int, wait: float = 10.0
) -> dict[str, Row]:
    """The firehose's disconnect log for ids starting with ``prefix`` (waits for ``expect``)."""
    import httpx

    params = {"prefix": prefix, "expect": str(expect), "timeout": str(wait)}
    with httpx.Client(timeout=wait + 10, trust_env=False) as client:
        entries = client.get(f"{_root_url(base_url)}/disconnects", params=params).json()
    return {entry["id"]: entry for entry in entries}


def reset_disconnects(base_url: str) -> None:
    import httpx

    with httpx.Client(timeout=10, trust_env=False) as client:
        client.post(f"{_root_url(base_url)}/reset")


# -- a real kernel --------------------------------------------------------------------------------


def kernel_env(root: Path = ROOT) -> dict[str, str]:
    """The kernel imports jupyter_stream from ``root``, with no key and no endpoint set."""
    drop = ("OPENAI_BASE_URL", "JUPYTER_STREAM_BASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env["JUPYTER_STREAM_MODEL"] = "demo"
    return env


@contextlib.contextmanager
def kernel(
    root: Path = ROOT, manager: KernelManager | None = None
) -> Iterator[BlockingKernelClient]:
    """A kernel (the ``python3`` one, or ``manager``'s) with ``%load_ext jupyter_stream`` run;
    shut down on exit."""
    if manager is None:
        from jupyter_client.manager import start_new_kernel

        km, kc = start_new_kernel(kernel_name="python3", env=kernel_env(root))
    else:
        km = manager
        km.start_kernel(env=kernel_env(root))
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


@contextlib.contextmanager
def demo_servers(**config: Any) -> Iterator[Callable[[float], BackgroundServer]]:
    """In-process servers, one a token rate, made on first use; all stopped on exit."""
    from jupyter_stream.server import BackgroundServer, ServerConfig

    made: dict[float, BackgroundServer] = {}

    def get(rate: float) -> BackgroundServer:
        if rate not in made:
            options = {"first_token_delay": 0, **config}
            server = BackgroundServer(ServerConfig(tokens_per_second=rate, **options))
            server.__enter__()
            made[rate] = server
        return made[rate]

    try:
        yield get
    finally:
        for server in made.values():
            server.stop()


FRAME = "comm_msg: ReplyView frame (custom)"
STATE_UPDATE = "comm_msg: state update"


@dataclass
class Cell:
    """The iopub messages of one cell, from execute_input to idle, and its execute_reply."""

    msg_id: str
    messages: list[Message] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    reply_comm: str | None = None  # the ReplyView's comm id
    stop_comm: str | None = None  # the Stop button's
    frames: int = 0  # ReplyView custom messages so far

    def kind(self, msg: Message) -> str:
        """The message's type, comm messages split by what they carry."""
        kind = str(msg["msg_type"])
        content = msg["content"]
        if kind == "comm_msg":
            method = content.get("data", {}).get("method")
            if method == "custom" and content.get("comm_id") == self.reply_comm:
                return FRAME
            return STATE_UPDATE if method == "update" else f"comm_msg: {method}"
        if kind == "comm_open":
            mine = content.get("comm_id") == self.reply_comm
            return "comm_open: ReplyView (with its _esm)" if mine else "comm_open: other widgets"
        return kind

    def final(self) -> dict[str, Any]:
        """The final update_display_data's content ({} if none)."""
        for msg in reversed(self.messages):
            if msg["msg_type"] == "update_display_data":
                return dict(msg["content"])
        return {}

    def final_output(self) -> tuple[str, dict[str, Any]]:
        """The final output's ``text/plain`` and ``jupyter_stream`` metadata."""
        content = self.final()
        meta = content.get("metadata", {}).get("jupyter_stream", {})
        return str(content.get("data", {}).get("text/plain", "")), dict(meta)

    def problems(self) -> list[str]:
        out = []
        for msg in self.messages:
            if msg["msg_type"] in ("error", "stream"):
                content = msg["content"]
                text = content.get("text") or f"{content.get('ename')}: {content.get('evalue')}"
                out.append(f"{msg['msg_type']}: {str(text).strip()[:200]}")
        if self.reply.get("status") != "ok":
            out.append(f"execute_reply status {self.reply.get('status')}")
        return out


def run_cell(
    kc: BlockingKernelClient,
    code: str,
    *,
    timeout: float,
    on_message: Callable[[Cell, Message], None] | None = None,
) -> Cell:
    """Execute ``code``; collect its iopub messages to its idle status, calling ``on_message``
    on each, then its execute_reply."""
    cell = Cell(kc.execute(code, store_history=False))
    deadline = time.monotonic() + timeout
    started = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the cell did not end in {timeout:g} s: {code[:60]!r}")
        try:
            msg = kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != cell.msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        started = started or kind == "execute_input"
        if not started:
            continue
        if kind == "comm_open":
            state = content.get("data", {}).get("state", {})
            if str(state.get("_anywidget_id", "")).endswith(".ReplyView"):
                cell.reply_comm = content["comm_id"]
            elif state.get("_model_name") == "ButtonModel" and state.get("description") == "Stop":
                cell.stop_comm = content["comm_id"]
        cell.messages.append(msg)
        if cell.kind(msg) == FRAME:
            cell.frames += 1
        if on_message is not None:
            on_message(cell, msg)
        if kind == "status" and content.get("execution_state") == "idle":
            break
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no execute_reply")
        try:
            msg = kc.get_shell_msg(timeout=left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == cell.msg_id:
            cell.reply = msg["content"]
            return cell


def date(msg: Message) -> float:
    """The kernel's send time of ``msg``, in seconds since the epoch."""
    sent = msg["header"]["date"]
    if isinstance(sent, str):
        sent = datetime.fromisoformat(sent.replace("Z", "+00:00"))
    return float(sent.timestamp())


def click_stop(
    kc: BlockingKernelClient, comm_id: str, server: BackgroundServer, wait: float
) -> tuple[float, float | None]:
    """Click Stop (a shell comm_msg) and wait, on the server's condition, until its ``ended``
    log gets a disconnect: the click's ``time.perf_counter()`` and the disconnect's (None if
    none came in ``wait`` s), timed in the waiting thread."""
    state = server.app.state.server
    seen: list[float] = []
    with state.changed:
        first = len(state.ended)

        def disconnected() -> bool:
            if not seen and any(e.get("end") == DISCONNECTED for e in list(state.ended)[first:]):
                seen.append(time.perf_counter())
            return bool(seen)

        t0 = time.perf_counter()
        content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
        kc.shell_channel.send(kc.session.msg("comm_msg", content))
        state.changed.wait_for(disconnected, wait)
    return t0, seen[0] if seen else None


# -- Stop click -> disconnect in a kernel (bench_frontend, bench_kernels) ------------------------

CLICK_RUNS = 20
CLICK_TOKENS = 20_000
CLICK_RATE = 50.0
CLICK_AFTER = 5  # ReplyView frames the kernel has sent before the click
CLICK_SLACK = 60.0  # seconds a cell may take beyond its schedule
PROMPT = "Tell me about server-sent events."


def chat_cell(base_url: str, max_tokens: int, extra: str = "") -> str:
    return f"%%chat --new --base-url {base_url} --max-tokens {max_tokens}{extra}\n{PROMPT}"


def click_once(kc: BlockingKernelClient, server: BackgroundServer, tokens: int) -> Row:
    """A ``%%chat`` cell at CLICK_RATE; Stop clicked after the ReplyView's CLICK_AFTER-th frame;
    then the cell's execute_reply must arrive, its final output saying stopped."""
    row: Row = {"latency_ms": None, "reply_ms": None}
    clicked: list[float] = []

    def on_message(cell: Cell, _msg: Message) -> None:
        if clicked or cell.frames < CLICK_AFTER or cell.stop_comm is None:
            return
        t0, seen = click_stop(kc, cell.stop_comm, server, CLICK_SLACK)
        clicked.append(t0)
        if seen is not None:
            row["latency_ms"] = (seen - t0) * 1000

    cell = run_cell(
        kc,
        chat_cell(server.base_url, tokens, " --timeout 600"),
        timeout=tokens / CLICK_RATE + CLICK_SLACK,
        on_message=on_message,
    )
    done = time.perf_counter()
    from jupyter_stream._render import MARKS

    plain, meta = cell.final_output()
    row["clicked"] = bool(clicked)
    row["reply_ms"] = (done - clicked[0]) * 1000 if clicked else None
    row["stopped"] = meta.get("stop_reason") == "stopped" and plain.endswith(
        f"[{MARKS['stopped']}]"
    )
    row["reply_ok"] = cell.reply.get("status") == "ok"
    row["problems"] = cell.problems()
    return row


def clicks(
    kc: BlockingKernelClient,
    server_for: Callable[[float], BackgroundServer],
    runs: int = CLICK_RUNS,
    tokens: int = CLICK_TOKENS,
) -> list[Row]:
    server = server_for(CLICK_RATE)
    return [click_once(kc, server, tokens) for _ in range(runs)]


def clicks_table(rows: list[Row]) -> str:
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    replies = [r["reply_ms"] for r in rows if r["reply_ms"] is not None]
    notes = sorted({p for r in rows for p in r["problems"]})
    columns = (
        "runs | clicks sent | disconnects seen | p50 ms | p90 ms | max ms | "
        "click → execute_reply p50 / max ms | execute_reply ok | output says stopped | <notes"
    )
    row = [
        len(rows), sum(r["clicked"] for r in rows), len(latencies),
        fmt(percentile(latencies, 0.5), ".2f"), fmt(percentile(latencies, 0.9), ".2f"),
        fmt(max(latencies, default=None), ".2f"),
        f"{fmt(percentile(replies, 0.5), '.0f')} / {fmt(max(replies, default=None), '.0f')}",
        f"{sum(r['reply_ok'] for r in rows)} / {len(rows)}",
        f"{sum(r['stopped'] for r in rows)} / {len(rows)}", " / ".join(notes)[:300],
    ]  # fmt: skip
    return table(columns, [row])


# -- the clients compared (bench_stream, bench_policies) ------------------------------------------

MESSAGES = [{"role": "user", "content": "benchmark"}]


def firehose_chat(chat: Callable[..., T], base_url: str, **options: Any) -> T:
    """``chat`` (``astream_chat`` or ``stream_chat``) of the firehose's answer; ``options`` are
    its own and the firehose's (``max_tokens``, ``bench_interval``, ``bench_id``)."""
    return chat(MESSAGES, model="bench", base_url=base_url, api_key="x", **options)


class Countdown:
    """An event set once ``done()`` was called ``n`` times: each stream calls it once, however it
    ended, so that one ending early does not hold the others up."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.event = asyncio.Event()

    def done(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.event.set()


def openai_or_error() -> tuple[Any, str | None]:
    """The openai module, or None and why: the comparison is left out, the benchmark runs."""
    try:
        import openai
    except Exception as exc:  # depends on the environment
        return None, f"{type(exc).__name__}: {exc}"
    return openai, None


def clients_header(command: str) -> str:
    import httpx

    openai, _error = openai_or_error()
    if openai is not None:
        try:
            import httpx2

            oa = f"openai {openai.__version__} (on httpx2 {httpx2.__version__})"
        except Exception:
            oa = f"openai {openai.__version__}"
    else:
        oa = "openai not installed"
    versions = f"Python {platform.python_version()} · httpx {httpx.__version__} · {oa}"
    return f"{versions} · {machine()} · `{command}`"
