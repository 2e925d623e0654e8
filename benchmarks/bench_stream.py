"""End-to-end throughput and stop latency of jupyter_stream's ChatStream against the openai SDK
and raw httpx, with benchmarks/firehose.py in its own process; figures, not pass/fail.

(a) ``throughput()``: chunks/s of a 20,000-chunk answer sent as fast as the server can, best of
    N after a warm-up, runs interleaved, pooled connections kept warm.
(b) ``stop_latency()``: a chunk every 20 ms; after the fifth delta the client notes
    ``t0 = time.monotonic()`` and closes; latency = the firehose's disconnect time (same clock)
    - ``t0``. Deltas delivered after ``close()`` returned are counted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import _harness as h
import firehose
import httpx

from jupyter_stream import astream_chat, stream_chat

openai, _OPENAI_IMPORT_ERROR = h.openai_or_error()

N_CHUNKS = 20_000
STOP_AFTER = 5  # deltas received before close()
INTERVAL = 0.02  # seconds between chunks in the stop-latency runs
PACED_MAX_TOKENS = 10_000  # 200 s at 20 ms: never reached, a bound
STREAM_DEADLINE = 30.0  # bound on any one measured stream
MESSAGES = h.MESSAGES

Row = h.Row


def _paced(bench_id: str) -> dict[str, Any]:
    """A paced answer that outlasts any measurement, its disconnect logged under ``bench_id``."""
    return {"max_tokens": PACED_MAX_TOKENS, "bench_interval": INTERVAL, "bench_id": bench_id}


def _ours_paced(chat: Any, base_url: str, bench_id: str) -> Any:
    return h.firehose_chat(
        chat, base_url, timeout=STREAM_DEADLINE, idle_timeout=10, **_paced(bench_id)
    )


async def _openai_paced(client: Any, bench_id: str) -> Any:
    extra = {"bench_interval": INTERVAL, "bench_id": bench_id}
    return await client.chat.completions.create(
        model="bench", messages=MESSAGES, stream=True, max_tokens=PACED_MAX_TOKENS, extra_body=extra
    )


# -- (a) throughput -------------------------------------------------------------------------------


class _Clients:
    """Long-lived clients of the comparison, made on the runner's loop."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.httpx: httpx.AsyncClient | None = None
        self.openai: Any = None

    async def aclose(self) -> None:
        if self.httpx is not None:
            await self.httpx.aclose()
        if self.openai is not None:
            await self.openai.close()


async def _tp_astream(clients: _Clients, n: int) -> tuple[float, int]:
    count = 0
    t = time.perf_counter()
    stream = h.firehose_chat(
        astream_chat, clients.base_url, max_tokens=n, bench_interval=0, timeout=120
    )
    async for _delta in stream:
        count += 1
    dt = time.perf_counter() - t
    if stream.stop_reason is None or stream.stop_reason.value != "completed":
        raise RuntimeError(f"astream_chat ended with {stream.stop_reason}: {stream.error}")
    return dt, count


async def _tp_openai(clients: _Clients, n: int) -> tuple[float, int]:
    if clients.openai is None:
        clients.openai = openai.AsyncOpenAI(base_url=clients.base_url, api_key="x", max_retries=0)
    count = 0
    t = time.perf_counter()
    stream = await clients.openai.chat.completions.create(
        model="bench",
        messages=MESSAGES,
        stream=True,
        max_tokens=n,
        stream_options={"include_usage": True},
        extra_body={"bench_interval": 0},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:  # the usage chunk has no choices
            count += 1
    return time.perf_counter() - t, count


async def _tp_httpx(clients: _Clients, n: int) -> tuple[float, int]:
    if clients.httpx is None:
        clients.httpx = httpx.AsyncClient(timeout=120)
    payload = {
        "model": "bench",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": n,
        "stream_options": {"include_usage": True},
        "bench_interval": 0,
    }
    count = 0
    loads = json.loads
    t = time.perf_counter()
    async with clients.httpx.stream(
        "POST", f"{clients.base_url}/chat/completions", json=payload
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
                if data == "[DONE]":
                    continue
                choices = loads(data)["choices"]
                if choices and choices[0]["delta"].get("content"):
                    count += 1
    return time.perf_counter() - t, count


def _tp_sync(base_url: str, n: int) -> tuple[float, int]:
    count = 0
    t = time.perf_counter()
    stream = h.firehose_chat(stream_chat, base_url, max_tokens=n, bench_interval=0, timeout=120)
    for _delta in stream:
        count += 1
    return time.perf_counter() - t, count


def throughput(base_url: str, *, repeats: int = 5, n: int = N_CHUNKS) -> list[Row]:
    """Chunks/s of each client; best of ``repeats`` after one warm-up, runs interleaved."""
    wire_bytes = len(firehose.build_body(n, include_usage=True))
    cases: list[tuple[str, str, Any]] = [
        ("jupyter_stream astream_chat (async for)", "async", _tp_astream),
        ("openai AsyncOpenAI stream (async for)", "async", _tp_openai),
        ("raw httpx aiter_lines + json.loads", "async", _tp_httpx),
        ("jupyter_stream stream_chat (sync for)", "sync", _tp_sync),
    ]
    skip = {}
    if openai is None:
        skip[cases[1][0]] = f"openai not importable: {_OPENAI_IMPORT_ERROR}"
    kinds = {name: (kind, fn) for name, kind, fn in cases}
    runner = h.Runner()
    clients = _Clients(base_url)

    def measure(name: str) -> tuple[float, int]:
        kind, fn = kinds[name]
        if kind == "async":
            return runner.run(asyncio.wait_for(fn(clients, n), 120))
        return fn(base_url, n)

    try:
        samples, errors = h.interleaved(list(kinds), measure, repeats=repeats, skip=skip)
    finally:
        try:
            runner.run(clients.aclose())
        finally:
            runner.close()
    times = {name: [dt for dt, _ in got] for name, got in samples.items()}
    counts = {name: [count for _, count in got] for name, got in samples.items()}
    rows: list[Row] = []
    for name, _, _ in cases:
        best = min(times[name]) if times[name] else None
        rows.append(
            {
                "client": name,
                "seconds": best,
                "chunks_per_s": n / best if best else None,
                "median_chunks_per_s": n / statistics.median(times[name]) if best else None,
                "mb_per_s": wire_bytes / best / 1e6 if best else None,
                "deltas": counts[name],
                "expected": n,
                "runs": len(times[name]),
                "error": errors.get(name),
            }
        )
    by_name = {row["client"]: row for row in rows}
    ref_openai = by_name[cases[1][0]]["chunks_per_s"]
    ref_httpx = by_name[cases[2][0]]["chunks_per_s"]
    med_httpx = by_name[cases[2][0]]["median_chunks_per_s"]
    for row in rows:
        cps = row["chunks_per_s"]
        row["vs_openai"] = cps / ref_openai if cps and ref_openai else None
        row["vs_httpx"] = cps / ref_httpx if cps and ref_httpx else None
        med = row["median_chunks_per_s"]
        row["median_vs_httpx"] = med / med_httpx if med and med_httpx else None
    return rows


# -- (b) stop latency -----------------------------------------------------------------------------


async def _stop_async_single(base_url: str, bench_id: str) -> Row:
    """One astream_chat, closed from its own task after the fifth delta."""
    stream = _ours_paced(astream_chat, base_url, bench_id)
    received = after = 0
    t0 = t_ret = None

    async def consume() -> None:
        nonlocal received, after, t0, t_ret
        async for _delta in stream:
            if t_ret is not None:
                after += 1
                continue
            received += 1
            if received == STOP_AFTER:
                t0 = time.monotonic()
                stream.close()
                t_ret = time.monotonic()
        await stream.aclose()

    await asyncio.wait_for(consume(), STREAM_DEADLINE + 5)
    return {"id": bench_id, "t0": t0, "t_ret": t_ret, "after": after, "reason": stream.stop_reason}


def _consumer_blocked(thread_id: int) -> bool:
    """Whether the thread is waiting inside ChatStream.__next__ (in Condition.wait)."""
    frame = sys._current_frames().get(thread_id)
    in_wait = False
    depth = 0
    while frame is not None and depth < 50:
        name = frame.f_code.co_name
        if name == "wait":
            in_wait = True
        elif name == "__next__" and in_wait:
            return True
        frame = frame.f_back
        depth += 1
    return False


def _stop_sync_single(base_url: str, bench_id: str) -> Row:
    """One stream_chat, consumed in this thread, closed from another thread while this one is
    blocked in next()."""
    ready = threading.Event()
    state: dict[str, Any] = {"t0": None, "t_ret": None, "blocked": False}
    closed = threading.Event()  # set right after close() returns in the closing thread
    consumer = threading.get_ident()

    with _ours_paced(stream_chat, base_url, bench_id) as stream:

        def closer() -> None:
            if not ready.wait(STREAM_DEADLINE):
                return
            # The consumer set `ready` and went straight into next(); check it is blocked
            # there (it is, unless the GIL hand-off raced it; bounded either way).
            deadline = time.monotonic() + 0.5
            for _ in range(100_000):
                if _consumer_blocked(consumer) or time.monotonic() > deadline:
                    break
            state["blocked"] = _consumer_blocked(consumer)
            state["t0"] = time.monotonic()
            stream.close()
            state["t_ret"] = time.monotonic()
            closed.set()

        thread = threading.Thread(target=closer, name="bench-closer", daemon=True)
        thread.start()
        received = after = 0
        for _delta in stream:  # bounded by the stream's deadline
            if closed.is_set():
                after += 1
                continue
            received += 1
            if received == STOP_AFTER:
                ready.set()
        ready.set()  # the stream ended early: release the closer
        thread.join(STREAM_DEADLINE)
    return {
        "id": bench_id,
        "t0": state["t0"],
        "t_ret": state["t_ret"],
        "after": after,
        "blocked": state["blocked"],
        "reason": stream.stop_reason,
    }


async def _stop_async_many(base_url: str, prefix: str, n_streams: int) -> list[Row]:
    """``n_streams`` astream_chat streams, all closed in one loop iteration once each has
    received five deltas. t0 is the start of the closing loop, common to all."""
    streams = [_ours_paced(astream_chat, base_url, f"{prefix}{k}") for k in range(n_streams)]
    reached = h.Countdown(n_streams)
    closed = False
    after = [0] * n_streams

    async def consume(k: int) -> None:
        got = 0
        try:
            async for _delta in streams[k]:
                if closed:
                    after[k] += 1
                    continue
                got += 1
                if got == STOP_AFTER:
                    reached.done()
        finally:
            if got < STOP_AFTER:  # ended early: do not hold the others up
                reached.done()

    tasks = [asyncio.create_task(consume(k)) for k in range(n_streams)]
    await asyncio.wait_for(reached.event.wait(), STREAM_DEADLINE)
    t0 = time.monotonic()
    for stream in streams:
        stream.close()
    t_ret = time.monotonic()
    closed = True
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), STREAM_DEADLINE)
    await asyncio.wait_for(asyncio.gather(*(s.aclose() for s in streams)), STREAM_DEADLINE)
    return [
        {
            "id": f"{prefix}{k}",
            "t0": t0,
            "t_ret": t_ret,
            "after": after[k],
            "reason": streams[k].stop_reason,
        }
        for k in range(n_streams)
    ]


async def _stop_openai_single(client: Any, bench_id: str) -> Row:
    """The openai SDK: ``await stream.close()`` after the fifth delta, then keep iterating."""
    stream = await _openai_paced(client, bench_id)
    received = after = 0
    t0 = t_ret = None
    error = None

    async def consume() -> None:
        nonlocal received, after, t0, t_ret
        async for chunk in stream:
            content = chunk.choices[0].delta.content if chunk.choices else None
            if not content:
                continue
            if t_ret is not None:
                after += 1
                continue
            received += 1
            if received == STOP_AFTER:
                t0 = time.monotonic()
                await stream.close()
                t_ret = time.monotonic()

    try:
        await asyncio.wait_for(consume(), STREAM_DEADLINE)
    except Exception as exc:  # what iterating a closed stream does (or a timeout)
        error = type(exc).__name__
    return {"id": bench_id, "t0": t0, "t_ret": t_ret, "after": after, "error": error}


async def _stop_openai_many(client: Any, prefix: str, n_streams: int) -> list[Row]:
    """``n_streams`` openai streams, closed at once with ``gather(stream.close() ...)``."""
    streams = await asyncio.gather(
        *(_openai_paced(client, f"{prefix}{k}") for k in range(n_streams))
    )
    reached = h.Countdown(n_streams)
    closing = closed = False
    during = [0] * n_streams
    after = [0] * n_streams
    errors: list[str | None] = [None] * n_streams

    async def consume(k: int) -> None:
        got = 0
        try:
            async for chunk in streams[k]:
                content = chunk.choices[0].delta.content if chunk.choices else None
                if not content:
                    continue
                if closed:
                    after[k] += 1
                    continue
                if closing:
                    during[k] += 1
                    continue
                got += 1
                if got == STOP_AFTER:
                    reached.done()
        except Exception as exc:
            errors[k] = type(exc).__name__
        finally:
            if got < STOP_AFTER:
                reached.done()

    tasks = [asyncio.create_task(consume(k)) for k in range(n_streams)]
    await asyncio.wait_for(reached.event.wait(), STREAM_DEADLINE)
    t0 = time.monotonic()
    closing = True
    await asyncio.wait_for(asyncio.gather(*(s.close() for s in streams)), STREAM_DEADLINE)
    t_ret = time.monotonic()
    closed = True
    _done, pending = await asyncio.wait(tasks, timeout=STREAM_DEADLINE)
    for task in pending:
        task.cancel()
    return [
        {
            "id": f"{prefix}{k}",
            "t0": t0,
            "t_ret": t_ret,
            "after": after[k],
            "during": during[k],
            "error": errors[k] or ("hung" if tasks[k] in pending else None),
        }
        for k in range(n_streams)
    ]


def _summarise(case: str, shape: str, samples: list[Row], seen: dict[str, Row]) -> Row:
    latencies = [
        (seen[s["id"]]["t"] - s["t0"]) * 1000
        for s in samples
        if s.get("t0") is not None and s["id"] in seen
    ]
    calls = [(s["t_ret"] - s["t0"]) * 1000 for s in samples if s.get("t_ret") is not None]
    errors = sorted({str(s["error"]) for s in samples if s.get("error")})
    row: Row = {
        "case": case,
        "shape": shape,
        "samples": len(latencies),
        "expected": len(samples),
        "median_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": h.percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else None,
        "close_call_ms": statistics.median(calls) if calls else None,
        "after": sum(s["after"] for s in samples),
        "during": sum(s.get("during", 0) for s in samples),
        "notes": "",
    }
    notes = []
    missing = len(samples) - len(latencies)
    if missing:
        notes.append(f"{missing} disconnects not seen by the server")
    if any("blocked" in s for s in samples):
        blocked = sum(1 for s in samples if s.get("blocked"))
        notes.append(f"consumer blocked in next() at close: {blocked}/{len(samples)}")
    if errors:
        notes.append("iterating after close raised " + ", ".join(errors))
    reasons = sorted({str(s["reason"]) for s in samples if s.get("reason") is not None})
    if reasons and reasons != ["stopped"]:
        notes.append("stop reasons: " + ", ".join(reasons))
    row["notes"] = "; ".join(notes)
    return row


def stop_latency(
    base_url: str, *, single_repeats: int = 50, many_repeats: int = 5, n_streams: int = 100
) -> list[Row]:
    """Server-observed stop latency for each way of closing; one row per case."""
    run = uuid.uuid4().hex[:6]
    h.reset_disconnects(base_url)
    runner = h.Runner()

    def case(name: str, prefix: str, measure: Callable[[str], Any], many: bool = False) -> Row:
        """One row; ``measure(bench_id)`` gives a run's row, or with ``many`` a list of rows
        for the streams named ``bench_id + k``."""
        samples: list[Row] = []
        for i in range(many_repeats if many else single_repeats):
            got = measure(f"{run}-{prefix}-{i}" + ("-" if many else ""))
            samples += got if many else [got]
        seen = h.fetch_disconnects(base_url, f"{run}-{prefix}-", len(samples))
        shape = f"{n_streams} x {many_repeats}" if many else f"1 x {single_repeats}"
        return _summarise(name, shape, samples, seen)

    rows: list[Row] = []
    try:
        rows.append(
            case(
                "astream_chat: close() in its own task",
                "a1",
                lambda i: runner.run(_stop_async_single(base_url, i)),
            )
        )
        rows.append(
            case(
                "stream_chat: close() from another thread",
                "s1",
                lambda i: _stop_sync_single(base_url, i),
            )
        )
        rows.append(
            case(
                f"astream_chat: {n_streams} closed in one loop iteration",
                "aN",
                lambda p: runner.run(_stop_async_many(base_url, p, n_streams)),
                True,
            )
        )
        if openai is None:
            rows.append({"case": "openai SDK", "notes": f"not run: {_OPENAI_IMPORT_ERROR}"})
            return rows

        async def make() -> Any:
            return openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

        client = runner.run(make())
        try:
            rows.append(
                case(
                    "openai SDK: await stream.close() in its own task",
                    "o1",
                    lambda i: runner.run(_stop_openai_single(client, i)),
                )
            )
            rows.append(
                case(
                    f"openai SDK: {n_streams} closed with gather(close())",
                    "oN",
                    lambda p: runner.run(_stop_openai_many(client, p, n_streams)),
                    True,
                )
            )
        except Exception as exc:
            rows.append(
                {"case": "openai SDK", "notes": f"failed: {type(exc).__name__}: {exc}"[:300]}
            )
        finally:
            runner.run(client.close())
    finally:
        runner.close()
    return rows


# -- output ---------------------------------------------------------------------------------------


def throughput_table(rows: list[Row]) -> str:
    columns = (
        "<client | chunks/s (best) | MB/s | vs openai | vs raw httpx | chunks/s (median) | "
        "<content deltas received"
    )
    body = []
    for row in rows:
        if row["error"] and row["chunks_per_s"] is None:
            body.append([row["client"], "—", "—", "—", "—", "—", f"not run: {row['error']}"])
            continue
        counts = set(row["deltas"])
        if counts == {row["expected"]}:
            got = f"all {row['expected']:,} in every run"
        else:
            got = "**" + ", ".join(f"{c:,}" for c in row["deltas"]) + f" of {row['expected']:,}**"
        if row["error"]:
            got += f" (error: {row['error']})"
        body.append([
            row["client"], h.fmt(row["chunks_per_s"], ",.0f"), h.fmt(row["mb_per_s"]),
            f"{h.fmt(row['vs_openai'], '.2f')}x", f"{h.fmt(row['vs_httpx'], '.2f')}x",
            h.fmt(row["median_chunks_per_s"], ",.0f"), got,
        ])  # fmt: skip
    return h.table(columns, body)


def stop_table(rows: list[Row]) -> str:
    columns = (
        "<case | <streams x runs | median ms | p99 ms | max ms | close() call ms (median) | "
        "deltas after close() returned | <notes"
    )
    body = []
    for row in rows:
        if "median_ms" not in row:
            body.append([row["case"], "", "", "", "", "", "", row["notes"]])
            continue
        after = f"{row['after']}"
        if row["during"]:
            after += f" (+{row['during']} while close() was awaited)"
        body.append([
            row["case"], row["shape"], h.fmt(row["median_ms"], ".2f"), h.fmt(row["p99_ms"], ".2f"),
            h.fmt(row["max_ms"], ".2f"), h.fmt(row["close_call_ms"], ".3f"), after, row["notes"],
        ])  # fmt: skip
    return h.table(columns, body)


def targets(tp_rows: list[Row], stop_rows: list[Row]) -> str:
    tp = {row["client"]: row for row in tp_rows}
    ours = tp.get("jupyter_stream astream_chat (async for)", {})
    vs_openai, vs_httpx = ours.get("vs_openai"), ours.get("vs_httpx")
    st = {row["case"]: row for row in stop_rows}
    lines = ["Targets:"]
    lines.append(
        f"- end-to-end ≥ 5x openai SDK: {h.fmt(vs_openai, '.2f')}x — "
        f"{h.verdict(None if vs_openai is None else vs_openai >= 5)}"
    )
    lines.append(
        f"- end-to-end ≥ 1.0x raw httpx lines+json: {h.fmt(vs_httpx, '.2f')}x — "
        f"{h.verdict(None if vs_httpx is None else vs_httpx >= 1.0)} "
        f"(median against median: {h.fmt(ours.get('median_vs_httpx'), '.2f')}x)"
    )
    for case in (
        "astream_chat: close() in its own task",
        "stream_chat: close() from another thread",
    ):
        m = st.get(case, {}).get("median_ms")
        lines.append(
            f"- stop latency median < 2 ms, {case}: {h.fmt(m, '.2f')} ms — "
            f"{h.verdict(None if m is None else m < 2)}"
        )
    many = [r for c, r in st.items() if c.startswith("astream_chat:") and "closed in one" in c]
    if many:
        p99 = many[0].get("p99_ms")
        lines.append(
            f"- stop latency p99 < 50 ms with {many[0]['shape'].split(' ')[0]} streams: "
            f"{h.fmt(p99, '.2f')} ms — {h.verdict(None if p99 is None else p99 < 50)}"
        )
    ours_after = sum(r.get("after", 0) for c, r in st.items() if not c.startswith("openai"))
    lines.append(
        f"- zero deltas after close() (jupyter_stream, all cases): {ours_after} — "
        f"{h.verdict(ours_after == 0)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = h.parser(__doc__, ("throughput", "stop"), "fewer repeats (a smoke run)").parse_args(argv)
    command = h.command_line("bench_stream.py", argv)
    if args.quick:
        tp_repeats, single, many = 2, 10, 2
    else:
        tp_repeats, single, many = 9, 50, 5

    print("## jupyter_stream: end-to-end streaming benchmarks\n")
    print(h.clients_header(command) + "\n")
    tp_rows: list[Row] = []
    stop_rows: list[Row] = []
    with h.firehose() as server:
        base_url = server.base_url
        if args.only in (None, "throughput"):
            tp_rows = throughput(base_url, repeats=tp_repeats)
            h.section(
                f"Throughput: {N_CHUNKS:,} chunks sent as fast as the server can "
                f"(best of {tp_repeats} after a warm-up; MB/s of the event-stream body)",
                throughput_table(tp_rows),
            )
        if args.only in (None, "stop"):
            stop_rows = stop_latency(base_url, single_repeats=single, many_repeats=many)
            h.section(
                f"Stop latency: one chunk every {INTERVAL * 1000:.0f} ms; close() after "
                f"{STOP_AFTER} deltas; latency = server sees the disconnect - t0 (ms)",
                stop_table(stop_rows),
            )
    print(targets(tp_rows, stop_rows))


if __name__ == "__main__":
    main()
