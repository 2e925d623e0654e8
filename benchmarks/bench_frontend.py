"""What a ``%%chat`` cell costs the notebook front end, and how fast its Stop button acts: a real
``python3`` kernel and an in-process demo server; figures, not pass/fail. No front end renders
the widgets (a real one adds a full-state ``sync`` frame per view).

(a) ``traffic()``: one ``%%chat --new --max-tokens 4000`` cell a rate after a warm-up; every
    iopub message of the cell counted. Wire size: header, parent_header, metadata and content as
    compact JSON, + 64 bytes of HMAC and 9 of delimiter, + buffers. A frame is a custom
    ``comm_msg`` of the cell's ReplyView (the last, exact one follows at once, so targets count
    1 s windows with and without it; kernel header dates). Budget: ``3 x reply bytes + 1 KiB x
    frames``.
(b) ``clicks()``: the harness's Stop click after the ReplyView's 5th frame, timed to the server's
    "client disconnected"; the cell's execute_reply must follow, saying stopped.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import _harness as h

from jupyter_stream._render import FRAME_INTERVAL, MARKS

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient

    from jupyter_stream.server import BackgroundServer

RATES = (50.0, 200.0)
TRAFFIC_TOKENS = 4000
FRAMES_PER_SECOND = 20  # the cap the widgets promise
EARLY = FRAME_INTERVAL - 0.002  # a frame this soon after the last one broke the pacing
SIGNATURE = 64  # an HMAC-SHA256 signature, in hex
DELIMITER = len(b"<IDS|MSG>")
KIB = 1024
SLACK = h.CLICK_SLACK

Row = h.Row
Message = h.Message


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


# -- (a) the traffic of one cell ------------------------------------------------------------------


def measure_traffic(cell: h.Cell, rate: float, tokens: int) -> Row:
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
            comm_times.append(h.date(msg))
            if kind == h.FRAME:
                frame_times.append(h.date(msg))
                frame_status.append("s" in msg["content"]["data"].get("content", {}))
        elif msg["msg_type"] == "display_data" and shown is None:
            shown = h.date(msg)
        elif msg["msg_type"] == "update_display_data":
            ended = h.date(msg)
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
        "max_frames_1s": h.max_in_window(frame_times),
        "max_paced_1s": h.max_in_window(frame_times[:-1]),  # without the final, exact frame
        "early": len(early),
        "early_status": sum(frame_status[i] or frame_status[i - 1] for i in early),
        "early_final": frames - 1 in early,
        "status_frames": sum(frame_status),
        "max_comm_1s": h.max_in_window(comm_times),
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
        cell = h.run_cell(
            kc,
            h.chat_cell(server.base_url, tokens, " --timeout 600"),
            timeout=tokens / rate + SLACK,
        )
        rows.append(measure_traffic(cell, rate, tokens))
    return rows


# -- output ---------------------------------------------------------------------------------------


def header(command: str) -> str:
    stack = h.versions("ipykernel", "ipywidgets", "anywidget", "jupyter_client")
    return f"Python {platform.python_version()} · {stack} · {h.machine()} · `{command}`"


def traffic_table(rows: list[Row]) -> str:
    columns = (
        "tokens/s | reply bytes | streaming s | messages | comm_msg | frames | frames/s | "
        "max frames in 1 s | max comm_msg in 1 s | total bytes | budget bytes | <within budget | "
        "bytes/frame"
    )
    return h.table(columns, ([
        f"{row['rate']:g}", f"{row['reply_bytes']:,}", h.fmt(row["streaming_s"], ".2f"),
        f"{row['messages']:,}", f"{row['comm_msgs']:,}", f"{row['frames']:,}", h.fmt(row["fps"]),
        row["max_frames_1s"], row["max_comm_1s"], f"{row['bytes']:,}", f"{row['budget']:,}",
        "yes" if row["met"] else f"**no** ({row['bytes'] / row['budget']:.2f}x)",
        h.fmt(row["bytes_per_frame"], ",.0f"),
    ] for row in rows))  # fmt: skip


def breakdown_table(rows: list[Row]) -> str:
    columns = (
        "tokens/s | <message | count | bytes | % of bytes | bytes/message | "
        "of which content bytes/message"
    )
    body = []
    for row in rows:
        sizes: dict[str, int] = row["bytes_by_kind"]
        for kind, size in sorted(sizes.items(), key=lambda item: -item[1]):
            count = row["by_kind"][kind]
            content = row["content_by_kind"][kind]
            share = size / row["bytes"] * 100
            body.append(
                [f"{row['rate']:g}", kind, f"{count:,}", f"{size:,}", f"{share:.1f}",
                 f"{size / count:,.0f}", f"{content / count:,.0f}"]
            )  # fmt: skip
    return h.table(columns, body)


def targets(t_rows: list[Row]) -> str:
    lines = ["Targets:"]
    for row in t_rows:
        most = row["max_frames_1s"]
        lines.append(
            f"- {row['rate']:g} tokens/s: at most {FRAMES_PER_SECOND} ReplyView frames in any "
            f"1 s: max {most} ({row['max_paced_1s']} without the final, exact frame) — "
            f"{h.verdict(most <= FRAMES_PER_SECOND)}; {row['early']} frames came less than "
            f"{EARLY * 1000:g} ms after the previous one ({row['early_status']} of them carry "
            f"the status line or follow one that does; the final frame "
            f"{'is' if row['early_final'] else 'is not'} one of them; "
            f"{row['status_frames']} frames carry the status line)"
        )
        over = row["bytes"] - row["budget"]
        lines.append(
            f"- {row['rate']:g} tokens/s: bytes <= 3 x reply + 1 KiB x frames: "
            f"{row['bytes']:,} vs {row['budget']:,} "
            f"({'+' if over > 0 else ''}{over:,} bytes) — {h.verdict(row['met'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__doc__, ("traffic", "clicks"))
    parser.add_argument("--tokens", type=int, help=f"the reply's tokens (default {TRAFFIC_TOKENS})")
    parser.add_argument("--clicks", type=int, help=f"Stop clicks (default {h.CLICK_RUNS})")
    args = parser.parse_args(argv)
    command = h.command_line("bench_frontend.py", argv)
    tokens = args.tokens or (1000 if args.quick else TRAFFIC_TOKENS)
    runs = args.clicks or (5 if args.quick else h.CLICK_RUNS)

    started = time.monotonic()
    print("## %%chat in a kernel: front-end traffic and Stop latency\n")
    print(header(command) + "\n", flush=True)
    t_rows: list[Row] = []
    with h.demo_servers() as server_for, h.kernel() as kc:
        warm = h.run_cell(kc, h.chat_cell(server_for(RATES[-1]).base_url, 20), timeout=SLACK)
        if warm.problems():
            print("Warm-up cell: " + " / ".join(warm.problems()) + "\n")
        if args.only in (None, "traffic"):
            t_rows = traffic(kc, server_for, RATES, tokens)
            h.section(
                f"Traffic of one `%%chat --max-tokens {tokens} --timeout 600` cell (demo "
                "model): iopub messages from execute_input to idle; bytes = compact JSON of "
                f"the 4 parts + {SIGNATURE} signature + {DELIMITER} delimiter; budget = "
                "3 x reply bytes + 1 KiB x frames",
                traffic_table(t_rows),
            )
            h.section(
                "Bytes by message type (comm messages split by what they carry; content = "
                "the content part alone, the rest is header, parent_header, metadata, signature "
                "and delimiter)",
                breakdown_table(t_rows),
            )
            for row in t_rows:
                if row["reply_tokens"] != tokens or row["problems"]:
                    print(
                        f"Note, {row['rate']:g} tokens/s: {row['reply_tokens']} tokens, "
                        f"{row['stop_reason']}; " + " / ".join(row["problems"]) + "\n"
                    )
            sys.stdout.flush()
        if args.only in (None, "clicks"):
            c_rows = h.clicks(kc, server_for, runs)
            h.section(
                f"Stop click → the server sees the disconnect: `%%chat --max-tokens "
                f"{h.CLICK_TOKENS}` at {h.CLICK_RATE:g} tokens/s, clicked after the ReplyView's "
                f"{h.CLICK_AFTER}th frame; latency = the server's `ended` gets "
                f'"{h.DISCONNECTED}" - the click sent',
                h.clicks_table(c_rows),
            )
    if t_rows:
        print(targets(t_rows))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
