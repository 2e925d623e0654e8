"""Every API jupyter_stream speaks, against that API's official SDK: end-to-end throughput and
stop latency, with benchmarks/firehose.py (each API's stream shape) in its own process; figures,
not pass/fail.

(a) ``throughput()``: deltas/s of an answer of N chunks of " tok" sent as fast as the server can,
    in each API's shape; jupyter_stream's ``astream_chat(api=...)`` against the official SDK
    (openai chat and responses, anthropic ``messages.stream``, google-genai
    ``generate_content_stream`` on v1beta, ollama ``chat(stream=True)``), best of R after a
    warm-up, every case once a round, pooled connections kept warm. MB/s is of the body's bytes.
(b) ``stop_latency()``: a chunk every 20 ms; a ``stream_chat(api=...)`` consumed in one thread,
    ``close()`` from another after the fifth delta, while the consumer waits in ``next()``;
    latency = the firehose's disconnect time (same clock) - the time of the call. Deltas
    delivered after ``close()`` returned are counted (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import _harness as h
import firehose
import httpx

from jupyter_stream import StopReason, astream_chat, stream_chat
from jupyter_stream._wire import FORMATS

APIS = ("chat", "responses", "anthropic", "gemini", "ollama")
SDKS = {
    "chat": "openai chat.completions.create(stream=True)",
    "responses": "openai responses.create(stream=True)",
    "anthropic": "anthropic messages.stream().text_stream",
    "gemini": "google-genai aio generate_content_stream (v1beta)",
    "ollama": "ollama AsyncClient.chat(stream=True)",
}
WHO = ("ours", "sdk", "raw")  # raw: httpx lines and json.loads, the floor of any Python client
STOP_AFTER = 5  # deltas received before close()
INTERVAL = 0.02  # seconds between chunks in the stop-latency runs
PACED_TOKENS = 10_000  # 200 s at 20 ms: never reached, a bound
STREAM_DEADLINE = 60.0  # bound on any one measured stream
PROMPT = [{"role": "user", "content": "benchmark"}]

Row = h.Row


def model(n: int, interval: float = 0, bench_id: str = "") -> str:
    """The firehose reads its options from the model name, which every API carries."""
    return f"bench_n{n}" + (f"_i{interval:g}_id{bench_id}" if interval else "")


def base_url(root: str, api: str) -> str:
    """Where each official SDK (and so jupyter_stream) points: OpenAI's ``…/v1``, the others
    the host."""
    return root + "/v1" if api in ("chat", "responses") else root


# -- (a) throughput -------------------------------------------------------------------------------


class _SDKs:
    """The official clients, made once on the runner's loop (warm pools, as in an application)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.made: dict[str, Any] = {}

    def get(self, api: str) -> Any:
        if api not in self.made:
            self.made[api] = self._make(api)
        return self.made[api]

    def _make(self, api: str) -> Any:
        url = base_url(self.root, api)
        if api in ("chat", "responses"):
            import openai

            return openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        if api == "anthropic":
            import anthropic

            return anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
        if api == "gemini":
            from google import genai
            from google.genai import types

            options = types.HttpOptions(base_url=url, api_version="v1beta")
            return genai.Client(api_key="x", http_options=options)
        import ollama

        return ollama.AsyncClient(host=url)

    async def aclose(self) -> None:
        for api, client in self.made.items():
            if api == "gemini":
                await client.aio.aclose()
            elif api == "ollama":
                await client._client.aclose()  # ollama's AsyncClient has no close of its own
            else:
                await client.close()


async def _sdk_stream(sdks: _SDKs, api: str, n: int) -> int:
    """Stream with ``api``'s official SDK; the number of text deltas."""
    client = sdks.get(api)
    name = model(n)
    count = 0
    if api == "chat":
        stream = await client.chat.completions.create(
            model=name, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
    elif api == "responses":
        stream = await client.responses.create(model=name, input="benchmark", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                count += 1
    elif api == "anthropic":
        async with client.messages.stream(model=name, max_tokens=n, messages=PROMPT) as stream:
            async for _text in stream.text_stream:
                count += 1
    elif api == "gemini":
        config = {"max_output_tokens": n}
        chunks = await client.aio.models.generate_content_stream(
            model=name, contents="benchmark", config=config
        )
        async for chunk in chunks:
            if chunk.text:
                count += 1
    else:
        async for part in await client.chat(model=name, messages=PROMPT, stream=True):
            if part.message.content:
                count += 1
    return count


def _raw_request(root: str, api: str, n: int) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body of ``api``'s streamed request, by hand."""
    name, ask = model(n), {"messages": PROMPT, "stream": True}
    if api == "chat":
        body = {"model": name, **ask, "stream_options": {"include_usage": True}}
        return f"{root}/v1/chat/completions", body
    if api == "responses":
        return f"{root}/v1/responses", {"model": name, "input": "benchmark", "stream": True}
    if api == "anthropic":
        return f"{root}/v1/messages", {"model": name, "max_tokens": n, **ask}
    if api == "gemini":
        contents = [{"role": "user", "parts": [{"text": "benchmark"}]}]
        url = f"{root}/v1beta/models/{name}:streamGenerateContent?alt=sse"
        return url, {"contents": contents}
    return f"{root}/api/chat", {"model": name, **ask}


def _raw_text(api: str, obj: Any) -> Any:
    """The text a decoded event carries (None when it carries none)."""
    if api == "chat":
        return obj["choices"][0]["delta"].get("content") if obj["choices"] else None
    if api == "responses":
        return obj.get("delta") if obj["type"] == "response.output_text.delta" else None
    if api == "anthropic":
        return obj["delta"].get("text") if obj["type"] == "content_block_delta" else None
    if api == "gemini":
        return obj["candidates"][0]["content"]["parts"][0].get("text")
    return obj["message"].get("content")


async def _raw(client: httpx.AsyncClient, root: str, api: str, n: int) -> int:
    """The floor: httpx's ``aiter_lines()``, ``json.loads`` of each data line, no checks."""
    url, body = _raw_request(root, api, n)
    loads, count = json.loads, 0
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if api == "ollama":
                data = line
            elif line.startswith("data: ") and line != "data: [DONE]":
                data = line[6:]
            else:
                continue
            if data and _raw_text(api, loads(data)):
                count += 1
    return count


async def _ours(root: str, api: str, n: int) -> int:
    stream = astream_chat(
        PROMPT, model=model(n), base_url=base_url(root, api), api_key="x", api=api, timeout=120
    )
    count = 0
    async with stream:
        async for _delta in stream:
            count += 1
    if stream.stop_reason is not StopReason.COMPLETED:
        raise h.Problem(f"ended with {stream.stop_reason}: {stream.error}")
    return count


def throughput(root: str, *, n: int, repeats: int) -> list[Row]:
    """One row per API: best-of deltas/s of ours and of the SDK, runs interleaved."""
    cases = [(api, who) for api in APIS for who in WHO]
    skip = {
        (api, "ours"): f"the {api!r} wire format has not landed"
        for api in APIS
        if api not in FORMATS
    }
    runner = h.Runner()
    sdks = _SDKs(root)
    raw: list[httpx.AsyncClient] = []

    async def raw_client() -> httpx.AsyncClient:
        if not raw:
            raw.append(httpx.AsyncClient(timeout=STREAM_DEADLINE, trust_env=False))
        return raw[0]

    def measure(case: tuple[str, str]) -> tuple[float, int]:
        api, who = case
        coro: Coroutine[Any, Any, int]
        if who == "ours":
            coro = _ours(root, api, n)
        elif who == "sdk":
            coro = _sdk_stream(sdks, api, n)
        else:
            coro = _raw(runner.run(raw_client()), root, api, n)
        t = time.perf_counter()
        count = runner.run(asyncio.wait_for(coro, STREAM_DEADLINE))
        return time.perf_counter() - t, count

    try:
        samples, problems = h.interleaved(cases, measure, repeats=repeats, skip=skip)
    finally:
        try:
            runner.run(sdks.aclose())
            for client in raw:
                runner.run(client.aclose())
        finally:
            runner.close()
    rows: list[Row] = []
    for api in APIS:
        size = len(firehose.build_body(n, True, api))
        row: Row = {"api": api, "n": n, "bytes": size}
        for who in WHO:
            got = samples[(api, who)]
            times = [dt for dt, _ in got]
            best = min(times) if times else None
            row[who] = {
                "best": n / best if best else None,
                "median": n / statistics.median(times) if times else None,
                "mb_s": size / best / 1e6 if best else None,
                "counts": sorted({count for _, count in got}),
                "problem": problems.get((api, who)),
            }
        ours, sdk = row["ours"]["best"], row["sdk"]["best"]
        row["ratio"] = ours / sdk if ours and sdk else None
        om, sm = row["ours"]["median"], row["sdk"]["median"]
        row["median_ratio"] = om / sm if om and sm else None
        floor = row["raw"]["best"]
        row["raw_ratio"] = ours / floor if ours and floor else None
        rows.append(row)
    return rows


# -- (b) stop latency -----------------------------------------------------------------------------


def _stop_once(root: str, api: str, bench_id: str) -> Row:
    """One stream_chat consumed here, closed from another thread after the fifth delta."""
    ready = threading.Event()
    closed = threading.Event()
    state: dict[str, Any] = {"t0": None, "t_ret": None}
    name = model(PACED_TOKENS, INTERVAL, bench_id)
    options = {"base_url": base_url(root, api), "api_key": "x", "api": api}
    with stream_chat(PROMPT, model=name, timeout=STREAM_DEADLINE, **options) as stream:

        def closer() -> None:
            if ready.wait(STREAM_DEADLINE):
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
        ready.set()  # ended early: release the closer
        thread.join(STREAM_DEADLINE)
    return {"id": bench_id, **state, "after": after, "reason": stream.stop_reason,
            "error": stream.error}  # fmt: skip


def stop_latency(root: str, *, runs: int) -> list[Row]:
    run = uuid.uuid4().hex[:6]
    h.reset_disconnects(root + "/v1")
    rows: list[Row] = []
    for api in APIS:
        if api not in FORMATS:
            rows.append({"api": api, "notes": f"not run: the {api!r} wire format has not landed"})
            continue
        prefix = f"{run}-{api}-"
        samples = [_stop_once(root, api, f"{prefix}{i}") for i in range(runs)]
        seen = h.fetch_disconnects(root + "/v1", prefix, len(samples))
        latencies = [
            (seen[s["id"]]["t"] - s["t0"]) * 1000
            for s in samples
            if s["t0"] is not None and s["id"] in seen
        ]
        calls = [(s["t_ret"] - s["t0"]) * 1000 for s in samples if s["t_ret"] is not None]
        notes = []
        if len(latencies) < len(samples):
            notes.append(f"{len(samples) - len(latencies)} disconnects not seen by the server")
        reasons = sorted({str(s["reason"]) for s in samples})
        if reasons != ["stopped"]:
            errors = sorted({type(s["error"]).__name__ for s in samples if s["error"]})
            notes.append("stop reasons: " + ", ".join(reasons + errors))
        rows.append({
            "api": api, "runs": len(samples), "seen": len(latencies),
            "median_ms": statistics.median(latencies) if latencies else None,
            "p95_ms": h.percentile(latencies, 0.95), "max_ms": max(latencies, default=None),
            "call_ms": statistics.median(calls) if calls else None,
            "after": sum(s["after"] for s in samples), "notes": "; ".join(notes),
        })  # fmt: skip
    return rows


# -- output ---------------------------------------------------------------------------------------


def _counts(side: Row, n: int) -> str:
    if side["problem"] and side["best"] is None:
        return f"not run: {side['problem']}"
    text = f"all {n:,}" if side["counts"] == [n] else "**" + ", ".join(map(str, side["counts"]))
    text += "**" if side["counts"] != [n] else ""
    return text + (f" (error: {side['problem']})" if side["problem"] else "")


def throughput_table(rows: list[Row]) -> str:
    columns = (
        "<API | ours deltas/s | ours MB/s | <official SDK | SDK deltas/s | SDK MB/s | "
        "ours / SDK | ours / SDK (medians) | raw httpx deltas/s | ours / raw | "
        "<deltas: ours; SDK; raw"
    )
    body = []
    for row in rows:
        ours, sdk, raw = row["ours"], row["sdk"], row["raw"]
        counts = "; ".join(_counts(row[who], row["n"]) for who in WHO)
        body.append([
            row["api"], h.fmt(ours["best"], ",.0f"), h.fmt(ours["mb_s"]), SDKS[row["api"]],
            h.fmt(sdk["best"], ",.0f"), h.fmt(sdk["mb_s"]),
            f"**{h.fmt(row['ratio'], '.1f')}x**", f"{h.fmt(row['median_ratio'], '.1f')}x",
            h.fmt(raw["best"], ",.0f"), f"{h.fmt(row['raw_ratio'], '.2f')}x", counts,
        ])  # fmt: skip
    return h.table(columns, body)


def stop_table(rows: list[Row]) -> str:
    columns = (
        "<API | runs | median ms | p95 ms | max ms | close() call ms (median) | "
        "deltas after close() | <notes"
    )
    body = []
    for row in rows:
        if "runs" not in row:
            body.append([row["api"], "", "", "", "", "", "", row["notes"]])
            continue
        body.append([
            row["api"], row["runs"], h.fmt(row["median_ms"], ".2f"), h.fmt(row["p95_ms"], ".2f"),
            h.fmt(row["max_ms"], ".2f"), h.fmt(row["call_ms"], ".3f"), row["after"], row["notes"],
        ])  # fmt: skip
    return h.table(columns, body)


def targets(tp_rows: list[Row], stop_rows: list[Row]) -> str:
    lines = ["Targets:"]
    for row in tp_rows:
        ratio = row["ratio"]
        ok = None if ratio is None else ratio >= 10
        floor, sdk = row["raw"]["best"], row["sdk"]["best"]
        reach = f"raw httpx itself: {h.fmt(floor / sdk if floor and sdk else None, '.1f')}x"
        lines.append(
            f"- {row['api']}: ≥ 10x its SDK: {h.fmt(ratio, '.1f')}x ({reach}) — {h.verdict(ok)}"
        )
    for row in stop_rows:
        median = row.get("median_ms")
        ok = None if median is None else median < 1 and row["after"] == 0
        lines.append(
            f"- {row['api']}: stop median < 1 ms and 0 deltas after close(): "
            f"{h.fmt(median, '.2f')} ms, {row.get('after', '—')} — {h.verdict(ok)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__doc__, ("throughput", "stop"), "5,000 chunks, fewer repeats")
    args = parser.parse_args(argv)
    command = h.command_line("bench_apis.py", argv)
    n, repeats, runs = (5_000, 2, 10) if args.quick else (20_000, 5, 30)
    print("## jupyter_stream: every API against its official SDK\n")
    print(h.versions("httpx", "openai", "anthropic", "google-genai", "ollama"))
    print(f"{h.machine()} · `{command}`\n")
    tp_rows: list[Row] = []
    stop_rows: list[Row] = []
    with h.firehose() as server:
        root = f"http://{h.HOST}:{server.port}"
        if args.only in (None, "throughput"):
            tp_rows = throughput(root, n=n, repeats=repeats)
            h.section(
                f"Throughput: {n:,} chunks per answer, as fast as the firehose sends them "
                f"(best of {repeats} after a warm-up; MB/s of the body)",
                throughput_table(tp_rows),
            )
        if args.only in (None, "stop"):
            stop_rows = stop_latency(root, runs=runs)
            h.section(
                f"Stop latency: one chunk every {INTERVAL * 1000:.0f} ms; stream_chat closed from "
                f"another thread after {STOP_AFTER} deltas; latency = the server sees the "
                "disconnect - close() called (ms)",
                stop_table(stop_rows),
            )
        problems = server.problems()
    if problems:
        print("Firehose problems:\n" + "\n".join(problems[:10]) + "\n")
    print(targets(tp_rows, stop_rows))


if __name__ == "__main__":
    main()
