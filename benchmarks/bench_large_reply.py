"""Stop during a long reply of one Markdown block (a 12,000-row table, a 9,000-line code block),
streamed by an in-process ``echo`` model at 300 tokens/s into a real kernel's ``%%chat`` cell;
figures, not pass/fail. ``--root DIR`` makes the kernel import another checkout's package
(``git archive <commit> jupyter_stream | tar -x -C DIR``) for a before/after comparison.

(a) ``clicks()``: Stop clicked at the first frame ``--click-after`` s after the display: click →
    disconnect (the server's ``ended`` log), click → the cell's idle; the most frames in any 1 s
    and the characters shown.
(b) ``final_cost()``, no kernel: the replies fed to a ``BlockSplitter`` 15 tokens at a time (slowest
    and median ``update()``), then the stopped final frame and ``reply_bundle``, against
    rendering the whole text again.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _harness as h

from jupyter_stream._render import (
    BlockSplitter,
    render_markdown,
    reply_bundle,
    safe_markdown_source,
)
from jupyter_stream.server import BackgroundServer, ServerConfig
from jupyter_stream.server._models import tokenize

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient

RATE = 300.0
TABLE_ROWS = 12_000
CODE_LINES = 9_000
CLICK_AFTER = 20.0  # seconds of streaming before the click
RUNS = 3
SLACK = 300.0  # seconds to wait for a disconnect or a cell end before giving up
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

Row = h.Row
Message = h.Message


def reply_text(shape: str) -> str:
    namespace: dict[str, Any] = {}
    exec(SHAPES[shape][1], namespace)
    return str(namespace["reply"])


# -- (a) in a kernel -----------------------------------------------------------------------------


def click_once(kc: BlockingKernelClient, server: BackgroundServer, click_after: float) -> Row:
    row: Row = {"disconnect_ms": None, "end_ms": None}
    shown: list[float] = []
    frames: list[float] = []
    t0: list[float] = []

    def on_message(cell: h.Cell, msg: Message) -> None:
        kind = cell.kind(msg)
        if kind == "display_data" and not shown:
            shown.append(time.monotonic())
        elif kind == h.FRAME:
            frames.append(h.date(msg))
        if t0 or not shown or cell.stop_comm is None or msg["msg_type"] != "comm_msg":
            return
        if time.monotonic() - shown[0] < click_after:
            return
        clicked, seen = h.click_stop(kc, cell.stop_comm, server, SLACK)
        t0.append(clicked)
        if seen is not None:
            row["disconnect_ms"] = (seen - clicked) * 1000

    code = f"%%chat --new -m echo --base-url {server.base_url} --timeout 900\n{{reply}}"
    cell = h.run_cell(kc, code, timeout=SLACK + 3 * click_after, on_message=on_message)
    if t0:
        row["end_ms"] = (time.perf_counter() - t0[0]) * 1000
    final = cell.final()
    meta = final.get("metadata", {}).get("jupyter_stream", {})
    row["stop_reason"] = meta.get("stop_reason")
    row["shown_chars"] = len(final.get("data", {}).get("text/plain", ""))
    row["max_frames_1s"] = h.max_in_window(frames)
    row["frames"] = len(frames)
    return row


def clicks(root: Path, shapes: list[str], runs: int, click_after: float) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    config = ServerConfig(tokens_per_second=RATE, first_token_delay=0, log_requests=False)
    with BackgroundServer(config) as server, h.kernel(root) as kc:
        for shape in shapes:
            h.run_cell(kc, SHAPES[shape][1], timeout=SLACK)
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


def clicks_table(rows: dict[str, list[Row]]) -> str:
    columns = (
        "<reply | runs | click → disconnect ms (median / max) | "
        "click → cell end ms (median / max) | stopped | characters shown (median) | "
        "max frames in 1 s"
    )
    body = []
    for shape, runs in rows.items():
        gone = [r["disconnect_ms"] for r in runs if r["disconnect_ms"] is not None]
        ends = [r["end_ms"] for r in runs if r["end_ms"] is not None]
        body.append([
            SHAPES[shape][0], len(runs), h.spread(gone), h.spread(ends),
            f"{sum(r['stop_reason'] == 'stopped' for r in runs)} / {len(runs)}",
            f"{statistics.median(r['shown_chars'] for r in runs):,.0f}",
            max(r["max_frames_1s"] for r in runs),
        ])  # fmt: skip
    return h.table(columns, body)


def cost_table(rows: list[Row]) -> str:
    columns = (
        "<reply | characters | frames | update() median / max ms | "
        "stopped final frame + reply_bundle ms | the whole text rendered and made safe again ms"
    )
    return h.table(columns, ([
        SHAPES[row["shape"]][0], f"{row['chars']:,}", f"{row['frames']:,}",
        f"{row['median_ms']:.2f} / {row['max_ms']:.1f}", f"{row['final_ms']:.1f}",
        f"{row['whole_ms']:.0f}",
    ] for row in rows))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__doc__, ("clicks", "cost"), "one run a shape, click at 5 s")
    parser.add_argument("--runs", type=int, help=f"clicks a shape (default {RUNS})")
    parser.add_argument("--click-after", type=float, help=f"seconds (default {CLICK_AFTER:g})")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--root", type=Path, default=h.ROOT, help="where the kernel imports from")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else RUNS)
    click_after = args.click_after or (5.0 if args.quick else CLICK_AFTER)
    command = h.command_line("bench_large_reply.py", argv)
    stack = h.versions("ipykernel", "ipywidgets", "anywidget")
    print("## Stop during a long reply of one Markdown block\n")
    print(
        f"Python {platform.python_version()} · {stack} · os.cpu_count() = {os.cpu_count()} · "
        f"kernel imports jupyter_stream from `{args.root}` · `{command.strip()}`\n",
        flush=True,
    )
    started = time.monotonic()
    if args.only in (None, "clicks"):
        rows = clicks(args.root, args.shapes, runs, click_after)
        title = f"Stop clicked {click_after:g} s into the reply (`echo` at {RATE:g} tokens/s)"
        h.section(title, clicks_table(rows))
    if args.only in (None, "cost"):
        title = f"Rendering cost in-process ({TOKENS_PER_FRAME} tokens a frame, whole reply)"
        h.section(title, cost_table([final_cost(shape) for shape in args.shapes]))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
