"""What a ``%%chat`` cell costs the notebook front end, and how fast its Stop button acts, with a
real kernel (``jupyter_client.start_new_kernel``, the ``python3`` kernel, ``%load_ext
jupyter_stream`` run once) and the demo model of an in-process ``BackgroundServer`` (one a rate,
``first_token_delay=0``), on loopback.

Run it as a script (``python benchmarks/bench_frontend.py [--quick]``); it prints Markdown tables
and never asserts pass/fail. A full run takes about 2.5 minutes (the 4,000-token reply at
50 tokens/s alone streams for 80 s); ``--quick`` (1,000 tokens, 5 clicks) about 40 s. There is
no front end: nothing renders the widgets, so no view asks the ReplyView for a ``sync`` (a real
front end adds one full-state frame per view it renders).

(a) ``traffic()``: one ``%%chat --new --max-tokens 4000 --timeout 600`` cell a rate (default 50
    and 200 tokens/s), after one warm-up cell. Every iopub message whose parent is the cell, from
    ``execute_input`` to the ``idle`` status, is counted, whatever its type. A message's wire size
    is the UTF-8 length of its header, parent_header, metadata and content, each serialized alone
    as compact JSON (dates as ``str``), plus 64 bytes of HMAC signature, 9 for the ``<IDS|MSG>``
    delimiter and its buffers (the ZMQ topic frame is left out; jupyter_client's own packer
    writes ``", "`` and ``": "``, a few % more). A *frame* is a custom ``comm_msg`` of the cell's
    ReplyView; the last one is the exact final frame, which follows the paced ones at once, so
    the targets give the most frames in any 1 s window with it and without it. Streaming time
    runs from the widgets' ``display_data`` to the final ``update_display_data`` (the kernel's
    header dates, as are the 1-second windows). The reply's bytes are the UTF-8 of the final
    ``text/plain`` without its trailing ``[mark]`` line. Budget: ``3 x reply bytes + 1 KiB x
    frames`` for everything the cell sends.
(b) ``clicks()``: a ``%%chat --new --max-tokens 20000`` cell at 50 tokens/s, N times (default 20)
    in the same kernel; once the kernel has sent the ReplyView's 5th frame, the benchmark holds
    the server's ``changed`` condition, notes ``t0 = time.perf_counter()``, sends the Stop
    button's click (a shell ``comm_msg``) and waits on the condition; the latency is when its
    predicate (a new entry in ``ended`` with ``end == "client disconnected"``) first holds, timed
    in the waiting thread, minus ``t0``. Then the cell's ``execute_reply`` must arrive and its
    final output must say it was stopped.

Each measurement function returns rows (dicts) so that a combined runner can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
if str(_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_ROOT))

from jupyter_client.blocking.client import BlockingKernelClient  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402

from jupyter_stream._render import FRAME_INTERVAL, MARKS  # noqa: E402
from jupyter_stream.server import BackgroundServer, ServerConfig  # noqa: E402

RATES = (50.0, 200.0)
TRAFFIC_TOKENS = 4000
CLICK_RUNS = 20
CLICK_TOKENS = 20_000
CLICK_RATE = 50.0
CLICK_AFTER = 5  # ReplyView frames the kernel has sent before the click
FRAMES_PER_SECOND = 20  # the cap the widgets promise
EARLY = FRAME_INTERVAL - 0.002  # a frame this soon after the last one broke the pacing
SIGNATURE = 64  # an HMAC-SHA256 signature, in hex
DELIMITER = len(b"<IDS|MSG>")
KIB = 1024
SLACK = 60.0  # seconds a cell may take beyond its schedule
PROMPT = "Tell me about server-sent events."
DISCONNECTED = "client disconnected"
FRAME = "comm_msg: ReplyView frame (custom)"
STATE_UPDATE = "comm_msg: state update"

Row = dict[str, Any]
Message = dict[str, Any]


# -- helpers --------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _json_bytes(part: Any) -> int:
    text = json.dumps(part, separators=(",", ":"), default=str, ensure_ascii=False)
    return len(text.encode("utf-8", errors="surrogateescape"))


def wire_bytes(msg: Message) -> int:
    """A message's size on the wire (see the module docstring)."""
    size = SIGNATURE + DELIMITER
    for key in ("header", "parent_header", "metadata", "content"):
        size += _json_bytes(msg.get(key, {}))
    for buffer in msg.get("buffers") or []:
        size += memoryview(buffer).nbytes
    return size


def _date(msg: Message) -> float:
    """The kernel's send time of ``msg``, in seconds since the epoch."""
    date = msg["header"]["date"]
    if isinstance(date, str):
        date = datetime.fromisoformat(date.replace("Z", "+00:00"))
    return float(date.timestamp())


def _max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most of ``times`` that fall in any window [t, t + width)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def _kernel_env() -> dict[str, str]:
    drop = ("OPENAI_BASE_URL", "JUPYTER_STREAM_BASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env["JUPYTER_STREAM_MODEL"] = "demo"
    return env


@contextlib.contextmanager
def _kernel() -> Iterator[BlockingKernelClient]:
    """A python3 kernel with ``%load_ext jupyter_stream`` run; shut down on exit."""
    km, kc = start_new_kernel(kernel_name="python3", env=_kernel_env())
    try:
        cell = run_cell(kc, "%load_ext jupyter_stream", timeout=60)
        if cell.reply.get("status") != "ok":
            raise RuntimeError(f"%load_ext jupyter_stream failed: {cell.reply}")
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@contextlib.contextmanager
def _servers() -> Iterator[Callable[[float], BackgroundServer]]:
    """Demo servers, one a rate, made on first use; all stopped on exit."""
    made: dict[float, BackgroundServer] = {}

    def get(rate: float) -> BackgroundServer:
        if rate not in made:
            server = BackgroundServer(ServerConfig(tokens_per_second=rate, first_token_delay=0))
            server.__enter__()
            made[rate] = server
        return made[rate]

    try:
        yield get
    finally:
        for server in made.values():
            server.stop()


# -- running a cell -------------------------------------------------------------------------------


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

    def final_output(self) -> tuple[str, dict[str, Any]]:
        """The final update_display_data's ``text/plain`` and ``jupyter_stream`` metadata."""
        for msg in reversed(self.messages):
            if msg["msg_type"] == "update_display_data":
                content = msg["content"]
                meta = content.get("metadata", {}).get("jupyter_stream", {})
                return str(content["data"].get("text/plain", "")), dict(meta)
        return "", {}

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


def _chat(base_url: str, max_tokens: int, extra: str = "") -> str:
    return f"%%chat --new --base-url {base_url} --max-tokens {max_tokens}{extra}\n{PROMPT}"


# -- (a) the traffic of one cell ------------------------------------------------------------------


def measure_traffic(cell: Cell, rate: float, tokens: int) -> Row:
    """The figures of one cell's messages (see the module docstring)."""
    by_kind: Counter[str] = Counter()
    bytes_by_kind: Counter[str] = Counter()
    content_by_kind: Counter[str] = Counter()
    frame_times: list[float] = []
    frame_status: list[bool] = []  # the frame carries the status line
    comm_times: list[float] = []
    shown = ended = None
    for msg in cell.messages:
        kind = cell.kind(msg)
        size = wire_bytes(msg)
        by_kind[kind] += 1
        bytes_by_kind[kind] += size
        content_by_kind[kind] += _json_bytes(msg["content"])
        if msg["msg_type"] == "comm_msg":
            comm_times.append(_date(msg))
            if kind == FRAME:
                frame_times.append(_date(msg))
                frame_status.append("s" in msg["content"]["data"].get("content", {}))
        elif msg["msg_type"] == "display_data" and shown is None:
            shown = _date(msg)
        elif msg["msg_type"] == "update_display_data":
            ended = _date(msg)
    plain, meta = cell.final_output()
    mark = MARKS.get(str(meta.get("stop_reason", "")))
    if mark is not None and plain.endswith(f"\n[{mark}]"):
        plain = plain[: -len(f"\n[{mark}]")]
    reply_bytes = len(plain.encode("utf-8"))
    frames = len(frame_times)
    # frames sent sooner than FRAME_INTERVAL after the previous one
    early = [i for i in range(1, frames) if frame_times[i] - frame_times[i - 1] < EARLY]
    total = sum(bytes_by_kind.values())
    streaming = ended - shown if shown is not None and ended is not None else None
    budget = 3 * reply_bytes + KIB * frames
    return {
        "rate": rate,
        "tokens": tokens,
        "reply_tokens": meta.get("tokens"),
        "stop_reason": meta.get("stop_reason"),
        "reply_bytes": reply_bytes,
        "streaming_s": streaming,
        "messages": len(cell.messages),
        "comm_msgs": len(comm_times),
        "frames": frames,
        "fps": frames / streaming if streaming else None,
        "max_frames_1s": _max_in_window(frame_times),
        "max_paced_1s": _max_in_window(frame_times[:-1]),  # without the final, exact frame
        "early": len(early),
        "early_status": sum(frame_status[i] or frame_status[i - 1] for i in early),
        "early_final": frames - 1 in early,
        "status_frames": sum(frame_status),
        "max_comm_1s": _max_in_window(comm_times),
        "bytes": total,
        "budget": budget,
        "met": total <= budget,
        "bytes_per_frame": total / frames if frames else None,
        "by_kind": dict(by_kind),
        "bytes_by_kind": dict(bytes_by_kind),
        "content_by_kind": dict(content_by_kind),
        "problems": cell.problems(),
    }


def traffic(
    kc: BlockingKernelClient,
    server_for: Callable[[float], BackgroundServer],
    rates: tuple[float, ...] = RATES,
    tokens: int = TRAFFIC_TOKENS,
) -> list[Row]:
    rows = []
    for rate in rates:
        server = server_for(rate)
        cell = run_cell(
            kc,
            _chat(server.base_url, tokens, " --timeout 600"),
            timeout=tokens / rate + SLACK,
        )
        rows.append(measure_traffic(cell, rate, tokens))
    return rows


# -- (b) Stop click to the server's disconnect ----------------------------------------------------


def _click(kc: BlockingKernelClient, comm_id: str) -> None:
    content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
    kc.shell_channel.send(kc.session.msg("comm_msg", content))


def click_once(kc: BlockingKernelClient, server: BackgroundServer, tokens: int) -> Row:
    state = server.app.state.server
    row: Row = {"latency_ms": None, "reply_ms": None}
    clicked: list[float] = []

    def on_message(cell: Cell, msg: Message) -> None:
        if clicked or cell.frames < CLICK_AFTER or cell.stop_comm is None:
            return
        seen: list[float] = []
        with state.changed:
            first = len(state.ended)

            def disconnected() -> bool:
                new = list(state.ended)[first:]
                if not seen and any(e.get("end") == DISCONNECTED for e in new):
                    seen.append(time.perf_counter())
                return bool(seen)

            t0 = time.perf_counter()
            clicked.append(t0)
            _click(kc, cell.stop_comm)
            state.changed.wait_for(disconnected, SLACK)
        if seen:
            row["latency_ms"] = (seen[0] - t0) * 1000

    cell = run_cell(
        kc,
        _chat(server.base_url, tokens, " --timeout 600"),
        timeout=tokens / CLICK_RATE + SLACK,
        on_message=on_message,
    )
    done = time.perf_counter()
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


# -- output ---------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "—"
    return format(value, spec)


def _version(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"no {name}"


def header(command: str) -> str:
    stack = " · ".join(
        _version(name) for name in ("ipykernel", "ipywidgets", "anywidget", "jupyter_client")
    )
    return (
        f"Python {platform.python_version()} · {stack} · os.cpu_count() = {os.cpu_count()} · "
        f"{platform.system()} {platform.machine()} · `{command}`"
    )


def traffic_table(rows: list[Row]) -> str:
    out = [
        "| tokens/s | reply bytes | streaming s | messages | comm_msg | frames | frames/s "
        "| max frames in 1 s | max comm_msg in 1 s | total bytes | budget bytes | within budget "
        "| bytes/frame |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
        "| ---: |",
    ]
    for row in rows:
        verdict = "yes" if row["met"] else f"**no** ({row['bytes'] / row['budget']:.2f}x)"
        out.append(
            f"| {row['rate']:g} | {row['reply_bytes']:,} | {_fmt(row['streaming_s'], '.2f')} "
            f"| {row['messages']:,} | {row['comm_msgs']:,} | {row['frames']:,} "
            f"| {_fmt(row['fps'])} | {row['max_frames_1s']} | {row['max_comm_1s']} "
            f"| {row['bytes']:,} | {row['budget']:,} | {verdict} "
            f"| {_fmt(row['bytes_per_frame'], ',.0f')} |"
        )
    return "\n".join(out)


def breakdown_table(rows: list[Row]) -> str:
    out = [
        "| tokens/s | message | count | bytes | % of bytes | bytes/message "
        "| of which content bytes/message |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        sizes: dict[str, int] = row["bytes_by_kind"]
        for kind, size in sorted(sizes.items(), key=lambda item: -item[1]):
            count = row["by_kind"][kind]
            out.append(
                f"| {row['rate']:g} | {kind} | {count:,} | {size:,} "
                f"| {size / row['bytes'] * 100:.1f} | {size / count:,.0f} "
                f"| {row['content_by_kind'][kind] / count:,.0f} |"
            )
    return "\n".join(out)


def clicks_table(rows: list[Row]) -> str:
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    replies = [r["reply_ms"] for r in rows if r["reply_ms"] is not None]
    notes = sorted({p for r in rows for p in r["problems"]})
    return "\n".join(
        [
            "| runs | clicks sent | disconnects seen | p50 ms | p90 ms | max ms "
            "| click → execute_reply p50 / max ms | execute_reply ok | output says stopped "
            "| notes |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            f"| {len(rows)} | {sum(r['clicked'] for r in rows)} | {len(latencies)} "
            f"| {_fmt(_percentile(latencies, 0.5), '.2f')} "
            f"| {_fmt(_percentile(latencies, 0.9), '.2f')} "
            f"| {_fmt(max(latencies, default=None), '.2f')} "
            f"| {_fmt(_percentile(replies, 0.5), '.0f')} / "
            f"{_fmt(max(replies, default=None), '.0f')} "
            f"| {sum(r['reply_ok'] for r in rows)} / {len(rows)} "
            f"| {sum(r['stopped'] for r in rows)} / {len(rows)} | {' / '.join(notes)[:300]} |",
        ]
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(t_rows: list[Row]) -> str:
    lines = ["Targets:"]
    for row in t_rows:
        most = row["max_frames_1s"]
        lines.append(
            f"- {row['rate']:g} tokens/s: at most {FRAMES_PER_SECOND} ReplyView frames in any "
            f"1 s: max {most} ({row['max_paced_1s']} without the final, exact frame) — "
            f"{_verdict(most <= FRAMES_PER_SECOND)}; {row['early']} frames came less than "
            f"{EARLY * 1000:g} ms after the previous one ({row['early_status']} of them carry "
            f"the status line or follow one that does; the final frame "
            f"{'is' if row['early_final'] else 'is not'} one of them; "
            f"{row['status_frames']} frames carry the status line)"
        )
        over = row["bytes"] - row["budget"]
        lines.append(
            f"- {row['rate']:g} tokens/s: bytes <= 3 x reply + 1 KiB x frames: "
            f"{row['bytes']:,} vs {row['budget']:,} "
            f"({'+' if over > 0 else ''}{over:,} bytes) — {_verdict(row['met'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--only", choices=("traffic", "clicks"), help="run one part")
    parser.add_argument("--tokens", type=int, help=f"the reply's tokens (default {TRAFFIC_TOKENS})")
    parser.add_argument("--clicks", type=int, help=f"Stop clicks (default {CLICK_RUNS})")
    args = parser.parse_args(argv)
    command = (
        "python benchmarks/bench_frontend.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    tokens = args.tokens or (1000 if args.quick else TRAFFIC_TOKENS)
    runs = args.clicks or (5 if args.quick else CLICK_RUNS)

    started = time.monotonic()
    print("## %%chat in a kernel: front-end traffic and Stop latency\n")
    print(header(command) + "\n", flush=True)
    t_rows: list[Row] = []
    with _servers() as server_for, _kernel() as kc:
        warm = run_cell(kc, _chat(server_for(RATES[-1]).base_url, 20), timeout=SLACK)
        if warm.problems():
            print("Warm-up cell: " + " / ".join(warm.problems()) + "\n")
        if args.only in (None, "traffic"):
            t_rows = traffic(kc, server_for, RATES, tokens)
            print(
                f"### Traffic of one `%%chat --max-tokens {tokens} --timeout 600` cell (demo "
                "model): iopub messages from execute_input to idle; bytes = compact JSON of "
                f"the 4 parts + {SIGNATURE} signature + {DELIMITER} delimiter; budget = "
                "3 x reply bytes + 1 KiB x frames\n"
            )
            print(traffic_table(t_rows) + "\n")
            print(
                "### Bytes by message type (comm messages split by what they carry; content = "
                "the content part alone, the rest is header, parent_header, metadata, signature "
                "and delimiter)\n"
            )
            print(breakdown_table(t_rows) + "\n")
            for row in t_rows:
                if row["reply_tokens"] != tokens or row["problems"]:
                    print(
                        f"Note, {row['rate']:g} tokens/s: {row['reply_tokens']} tokens, "
                        f"{row['stop_reason']}; " + " / ".join(row["problems"]) + "\n"
                    )
            sys.stdout.flush()
        if args.only in (None, "clicks"):
            c_rows = clicks(kc, server_for, runs)
            print(
                f"### Stop click → the server sees the disconnect: `%%chat --max-tokens "
                f"{CLICK_TOKENS}` at {CLICK_RATE:g} tokens/s, clicked after the ReplyView's "
                f"{CLICK_AFTER}th frame; latency = the server's `ended` gets "
                f'"{DISCONNECTED}" - the click sent\n'
            )
            print(clicks_table(c_rows) + "\n")
    if t_rows:
        print(targets(t_rows))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
