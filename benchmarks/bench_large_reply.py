"""Stop during a long reply of one Markdown block: a 12,000-row table and a 9,000-line code
block, streamed by the built-in ``echo`` model of an in-process ``BackgroundServer`` at 300
tokens/s (``first_token_delay=0``) into a ``%%chat`` cell of a real kernel
(``jupyter_client.start_new_kernel``, the ``python3`` kernel, ``%load_ext jupyter_stream``).

Run it as a script (``python benchmarks/bench_large_reply.py [--quick]``); it prints Markdown
tables and never asserts pass/fail. ``--root DIR`` makes the kernel import ``jupyter_stream``
from another checkout (``git archive <commit> jupyter_stream | tar -x -C DIR``), for a
before/after comparison; the server is always this checkout's.

(a) ``clicks()``: the reply is defined in the kernel (``reply = ...``) and asked for with
    ``%%chat --new -m echo --timeout 900`` and ``{reply}`` as the cell's body. When the first
    ReplyView frame sent ``--click-after`` seconds (default 20) after the widgets' display
    arrives, the benchmark holds the server's ``changed`` condition, notes
    ``t0 = time.perf_counter()``, sends the Stop button's click (a shell ``comm_msg``) and
    waits until the server's ``ended`` log gets ``"client disconnected"``: click → disconnect.
    It then reads iopub to the cell's ``idle`` status: click → cell end (the final frame and
    the final output included). Frames: the most ReplyView frames in any 1 s (kernel header
    dates), and the reply's characters shown when it ended.
(b) ``final_cost()``, in this process, no kernel: the same replies fed to a ``BlockSplitter``
    15 tokens at a time (300 tokens/s at 20 frames/s), whole: the slowest and the median
    ``update()``; then the stopped final frame (``final=True, quick=True``) and ``reply_bundle``
    reusing what the splitter rendered, against rendering the whole text again as the final
    output did before (``render_markdown`` + ``safe_markdown_source`` of the whole text).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import queue
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_ROOT))

from jupyter_client.blocking.client import BlockingKernelClient  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402

from jupyter_stream._render import (  # noqa: E402
    BlockSplitter,
    render_markdown,
    reply_bundle,
    safe_markdown_source,
)
from jupyter_stream.server import BackgroundServer, ServerConfig  # noqa: E402
from jupyter_stream.server._models import tokenize  # noqa: E402

RATE = 300.0
TABLE_ROWS = 12_000
CODE_LINES = 9_000
CLICK_AFTER = 20.0  # seconds of streaming before the click
RUNS = 3
SLACK = 300.0  # seconds to wait for a disconnect or a cell end before giving up
DISCONNECTED = "client disconnected"
TOKENS_PER_FRAME = int(RATE / 20)

# The replies, as code that the kernel runs (and this process, for (b)).
SHAPES = {
    "table": (
        f"{TABLE_ROWS:,}-row table",
        'reply = "| # | name | value | note |\\n| ---: | --- | ---: | --- |\\n" + "".join('
        'f"| {i} | item {i} | {i * 37 % 1000} | note <b>{i}</b> & more |\\n" '
        f"for i in range({TABLE_ROWS}))",
    ),
    "code": (
        f"{CODE_LINES:,}-line code block",
        'reply = "```python\\n" + "".join('
        "f\"value_{i} = compute({i}, '<tag>') * 2  # line {i}\\n\" "
        f'for i in range({CODE_LINES})) + "```\\n"',
    ),
}

Row = dict[str, Any]
Message = dict[str, Any]


def reply_text(shape: str) -> str:
    namespace: dict[str, Any] = {}
    exec(SHAPES[shape][1], namespace)
    return str(namespace["reply"])


# -- the kernel -----------------------------------------------------------------------------------


def _kernel_env(root: Path) -> dict[str, str]:
    drop = ("OPENAI_BASE_URL", "JUPYTER_STREAM_BASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env["JUPYTER_STREAM_MODEL"] = "demo"
    return env


@contextlib.contextmanager
def _kernel(root: Path) -> Iterator[BlockingKernelClient]:
    km, kc = start_new_kernel(kernel_name="python3", env=_kernel_env(root))
    try:
        _run(kc, "%load_ext jupyter_stream")
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(
    kc: BlockingKernelClient,
    code: str,
    on_message: Callable[[Message], None] | None = None,
    timeout: float = SLACK,
) -> list[Message]:
    """Execute ``code``; its iopub messages up to its idle status (``on_message`` sees each)."""
    msg_id = kc.execute(code, store_history=False)
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if on_message is not None:
            on_message(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise TimeoutError(f"the cell did not end in {timeout:g} s: {code[:60]!r}")


def _date(msg: Message) -> float:
    date = msg["header"]["date"]
    if isinstance(date, str):
        date = datetime.fromisoformat(date.replace("Z", "+00:00"))
    return float(date.timestamp())


def _max_in_window(times: list[float], width: float = 1.0) -> int:
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def click_once(kc: BlockingKernelClient, server: BackgroundServer, click_after: float) -> Row:
    state = server.app.state.server
    row: Row = {"disconnect_ms": None, "end_ms": None}
    comms: dict[str, str] = {}  # "reply" / "stop" -> comm id
    shown: list[float] = []
    frames: list[float] = []
    t0: list[float] = []

    def on_message(msg: Message) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open":
            data = content.get("data", {}).get("state", {})
            if str(data.get("_anywidget_id", "")).endswith(".ReplyView"):
                comms["reply"] = content["comm_id"]
            elif data.get("_model_name") == "ButtonModel" and data.get("description") == "Stop":
                comms["stop"] = content["comm_id"]
        elif kind == "display_data" and not shown:
            shown.append(time.monotonic())
        elif (
            kind == "comm_msg"
            and content.get("comm_id") == comms.get("reply")
            and content.get("data", {}).get("method") == "custom"
        ):
            frames.append(_date(msg))
        if t0 or not shown or "stop" not in comms or kind != "comm_msg":
            return
        if time.monotonic() - shown[0] < click_after:
            return
        seen: list[float] = []
        with state.changed:
            first = len(state.ended)

            def disconnected() -> bool:
                if not seen and any(
                    e.get("end") == DISCONNECTED for e in list(state.ended)[first:]
                ):
                    seen.append(time.perf_counter())
                return bool(seen)

            t0.append(time.perf_counter())
            message = {"method": "custom", "content": {"event": "click"}}
            kc.shell_channel.send(
                kc.session.msg("comm_msg", {"comm_id": comms["stop"], "data": message})
            )
            state.changed.wait_for(disconnected, SLACK)
        if seen:
            row["disconnect_ms"] = (seen[0] - t0[0]) * 1000

    code = f"%%chat --new -m echo --base-url {server.base_url} --timeout 900\n{{reply}}"
    messages = _run(kc, code, on_message, timeout=SLACK + 3 * click_after)
    if t0:
        row["end_ms"] = (time.perf_counter() - t0[0]) * 1000
    final: dict[str, Any] = next(
        (m["content"] for m in reversed(messages) if m["msg_type"] == "update_display_data"), {}
    )
    meta = final.get("metadata", {}).get("jupyter_stream", {})
    row["stop_reason"] = meta.get("stop_reason")
    row["shown_chars"] = len(final.get("data", {}).get("text/plain", ""))
    row["max_frames_1s"] = _max_in_window(frames)
    row["frames"] = len(frames)
    return row


def clicks(root: Path, shapes: list[str], runs: int, click_after: float) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    config = ServerConfig(tokens_per_second=RATE, first_token_delay=0, log_requests=False)
    with BackgroundServer(config) as server, _kernel(root) as kc:
        for shape in shapes:
            _run(kc, SHAPES[shape][1])
            out[shape] = [click_once(kc, server, click_after) for _ in range(runs)]
    return out


# -- (b) in this process --------------------------------------------------------------------------


def final_cost(shape: str) -> Row:
    text = reply_text(shape)
    tokens = tokenize(text)
    splitter = BlockSplitter(keep_markdown=True)
    sent, costs = "", []
    for at in range(0, len(tokens), TOKENS_PER_FRAME):
        sent += "".join(tokens[at : at + TOKENS_PER_FRAME])
        started = time.perf_counter()
        splitter.update(sent)
        costs.append(time.perf_counter() - started)
    started = time.perf_counter()
    splitter.update(sent, final=True, quick=True)
    kwargs: dict[str, Any] = {"reasoning": "", "status": "s", "reason": "stopped", "metadata": {}}
    reply_bundle(text=sent, rendered=splitter.rendered(), **kwargs)
    final = time.perf_counter() - started
    started = time.perf_counter()
    render_markdown(sent)
    safe_markdown_source(sent)
    whole = time.perf_counter() - started
    return {
        "shape": shape,
        "chars": len(text),
        "frames": len(costs),
        "median_ms": statistics.median(costs) * 1000,
        "max_ms": max(costs) * 1000,
        "final_ms": final * 1000,
        "whole_ms": whole * 1000,
    }


# -- output ---------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "—" if value is None else format(value, spec)


def _version(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"no {name}"


def _spread(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def clicks_table(rows: dict[str, list[Row]]) -> str:
    out = [
        "| reply | runs | click → disconnect ms (median / max) | click → cell end ms "
        "(median / max) | stopped | characters shown (median) | max frames in 1 s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for shape, runs in rows.items():
        gone = [r["disconnect_ms"] for r in runs if r["disconnect_ms"] is not None]
        ends = [r["end_ms"] for r in runs if r["end_ms"] is not None]
        out.append(
            f"| {SHAPES[shape][0]} | {len(runs)} | {_spread(gone)} | {_spread(ends)} "
            f"| {sum(r['stop_reason'] == 'stopped' for r in runs)} / {len(runs)} "
            f"| {statistics.median(r['shown_chars'] for r in runs):,.0f} "
            f"| {max(r['max_frames_1s'] for r in runs)} |"
        )
    return "\n".join(out)


def cost_table(rows: list[Row]) -> str:
    out = [
        "| reply | characters | frames | update() median / max ms | stopped final frame + "
        "reply_bundle ms | the whole text rendered and made safe again ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        out.append(
            f"| {SHAPES[row['shape']][0]} | {row['chars']:,} | {row['frames']:,} "
            f"| {row['median_ms']:.2f} / {row['max_ms']:.1f} | {row['final_ms']:.1f} "
            f"| {row['whole_ms']:.0f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run a shape, click at 5 s")
    parser.add_argument("--runs", type=int, help=f"clicks a shape (default {RUNS})")
    parser.add_argument("--click-after", type=float, help=f"seconds (default {CLICK_AFTER:g})")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--only", choices=("clicks", "cost"), help="run one part")
    parser.add_argument("--root", type=Path, default=_ROOT, help="where the kernel imports from")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else RUNS)
    click_after = args.click_after or (5.0 if args.quick else CLICK_AFTER)
    command = "python benchmarks/bench_large_reply.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    stack = " · ".join(_version(n) for n in ("ipykernel", "ipywidgets", "anywidget"))
    print("## Stop during a long reply of one Markdown block\n")
    print(
        f"Python {platform.python_version()} · {stack} · os.cpu_count() = {os.cpu_count()} · "
        f"kernel imports jupyter_stream from `{args.root}` · `{command.strip()}`\n",
        flush=True,
    )
    started = time.monotonic()
    if args.only in (None, "clicks"):
        rows = clicks(args.root, args.shapes, runs, click_after)
        print(f"### Stop clicked {click_after:g} s into the reply (`echo` at {RATE:g} tokens/s)\n")
        print(clicks_table(rows) + "\n", flush=True)
    if args.only in (None, "cost"):
        print(f"### Rendering cost in-process ({TOKENS_PER_FRAME} tokens a frame, whole reply)\n")
        print(cost_table([final_cost(shape) for shape in args.shapes]) + "\n")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
