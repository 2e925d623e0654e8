"""Load and relay benchmarks of ``jupyter-stream serve``, on loopback; figures, not pass/fail.

(a) ``concurrency()``: N raw-asyncio streaming clients of the ``demo`` model at once, in a
    process apart from the server's (a fresh server a row). Token k is due at ``sent +
    first_token_delay + k / tokens_per_second`` (``sent``: when its request was written, so
    queueing counts); its delay is when it was read minus that. CPU: user+system over wall, % of
    one core (the server's from /proc); peak RSS: the server's VmHWM; the client's loop lag (a
    5 ms sleeper) says whether the client kept up.
(b) ``relay()``: the firehose's stamped chunks (``bench_stamp``, CLOCK_MONOTONIC) read directly
    and through ``serve --upstream``: latency = read time - stamp. Then disconnect propagation:
    the client closes after 5 chunks; latency = the firehose sees the end - the client's close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h

HOST = h.HOST
STREAMS = (100, 500, 1000)
MAX_TOKENS = 150
TOKENS_PER_SECOND = 30.0
FIRST_TOKEN_DELAY = 0.2
MAX_STREAMS = 2000  # the server's --max-streams: above every N measured
LATE_MS = 50.0  # the issue's target for p99 token delay
RELAY_INTERVAL = 0.02
RELAY_CHUNKS = 300
RELAY_STREAMS = 100  # the concurrent relay row
DISCONNECT_RUNS = 20
CLOSE_AFTER = 5  # content chunks read before the client closes
SLACK = 30.0  # seconds a run may take beyond its schedule before it is cut short
MAX_HEAD = 64 * 1024
MESSAGES = h.MESSAGES

Row = h.Row


# -- helpers --------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": h.percentile(values, 0.5),
        "p99": h.percentile(values, 0.99),
        "max": max(values, default=None),
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int, key: str) -> float | None:
    """A ``kB`` line of /proc/PID/status (VmHWM, VmRSS), in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _post(path: str, body: dict[str, Any], port: int) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _chat_body(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "demo",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": max_tokens,
        **extra,
    }


def _head_status(head: bytes) -> int:
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


# -- subprocesses ---------------------------------------------------------------------------------

_BANNER = re.compile(r"serving http://127\.0\.0\.1:(\d+)/v1")


SERVER_PYTHON = sys.executable  # main() may change it (--server-python)


def _server(*options: str) -> contextlib.AbstractContextManager[h.Process]:
    """``python -m jupyter_stream serve --port 0 OPTIONS``; its port from the banner line."""

    def port_of(line: str) -> int | None:
        m = _BANNER.search(line)
        return int(m.group(1)) if m else None

    argv = [SERVER_PYTHON, "-m", "jupyter_stream", "serve", "--port", "0", *options]
    return h.spawn(argv, port_of, watch="stderr")


# -- (a) concurrent streams: the client process ---------------------------------------------------


class _Response(asyncio.Protocol):
    """One raw HTTP response: its head, then each read of its body to ``body(data, t)``, ``t``
    the read's ``time.monotonic()``; ``done`` once ended (``error`` says why, if not complete)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.status = 0
        self.complete = False
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        t = time.monotonic()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self._end("response head too large")
                return
            self.status = _head_status(self.head)
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self._end(f"HTTP {self.status}")
                return
            self.on_head(t)
        self.body(data, t)

    def on_head(self, t: float) -> None:
        pass

    def body(self, data: bytes, t: float) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _end(self, error: str | None) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


class _Counting(_Response):
    """One streaming request; notes each content token's delay from its due time. Events are
    counted by their ``\\n\\n`` boundaries (chunked framing has none, and JSON escapes newlines).
    Event 0 is the role chunk, events 1..max_tokens the content tokens, then finish and [DONE]."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.events = 0
        self.sent = 0.0
        self.split_nl = False  # the last read ended between the two newlines of a boundary
        self.tail = b""
        self.first_delay: float | None = None

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.sent = time.monotonic()
        self.transport.write(request)

    def on_head(self, t: float) -> None:
        self.run.head.append((t - self.sent) * 1000)

    def body(self, data: bytes, t: float) -> None:
        n = data.count(b"\n\n")
        if self.split_nl and data[:1] == b"\n":
            n += 1
        self.split_nl = data.endswith(b"\n") and not data.endswith(b"\n\n")
        if n:
            run = self.run
            first, self.events = self.events, self.events + n
            # events first..first+n-1 arrived now; content token k is event k + 1
            k0, k1 = max(first - 1, 0), min(self.events - 1, run.max_tokens)
            if k0 < k1:
                base = self.sent + run.first_token_delay
                interval = run.interval
                delays = [(t - (base + k * interval)) * 1000 for k in range(k0, k1)]
                run.delays.extend(delays)
                if k0 == 0:
                    run.first.append(delays[0])
                    self.first_delay = delays[0]
                    later = delays[1:]
                else:
                    later = delays
                first_delay = self.first_delay or 0.0
                run.jitter.extend([d - first_delay for d in later])
            if self.events >= run.max_tokens + 3:
                self.complete = b"[DONE]" in self.tail + data
                self._end(None if self.complete else "no [DONE] at the end")
                return
        self.tail = data[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.error = f"closed after {self.events} events" + (f" ({exc!r})" if exc else "")
            self.done.set_result(None)


@dataclass
class _Run:
    max_tokens: int
    first_token_delay: float
    interval: float
    delays: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # each stream's first token's delay
    jitter: list[float] = field(default_factory=list)  # delay - the stream's first token's delay
    head: list[float] = field(default_factory=list)  # request written -> response head read


async def _connect(port: int, run: _Run) -> _Counting | str:
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await loop.create_connection(lambda: _Counting(run), HOST, port)
    except OSError as exc:
        return f"connect failed: {exc.strerror or type(exc).__name__}"
    return protocol


async def _loop_lag(lags: list[float], period: float = 0.005) -> None:
    """How late this loop wakes a sleeper (ms): whether the client itself kept up."""
    for _ in range(1_000_000):
        t = time.monotonic()
        await asyncio.sleep(period)
        lags.append((time.monotonic() - t - period) * 1000)


def _run(coroutine: Any) -> Any:
    """``asyncio.run``, on uvloop when it is installed: the client must keep up with the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _client_run(spec: dict[str, Any]) -> Row:
    """The client process's work: a warm-up stream, then N at once."""
    port, n, max_tokens = spec["port"], spec["n"], spec["max_tokens"]
    interval = 1.0 / spec["tokens_per_second"]
    ftd = spec["first_token_delay"]
    request = _post("/v1/chat/completions", _chat_body(max_tokens), port)

    warm = _Run(2, ftd, interval)
    conn = await _connect(port, warm)
    if isinstance(conn, str):
        return {"fatal": f"warm-up: {conn}"}
    conn.send(_post("/v1/chat/completions", _chat_body(2), port))
    await asyncio.wait_for(conn.done, 10 + ftd)

    run = _Run(max_tokens, ftd, interval)
    lags: list[float] = []
    probe = asyncio.ensure_future(_loop_lag(lags))
    server_cpu0, client_cpu0, t0 = _cpu_seconds(spec["server_pid"]), _self_cpu(), time.monotonic()
    results = await asyncio.gather(*(_connect(port, run) for _ in range(n)))
    t_connected = time.monotonic()
    streams = [r for r in results if not isinstance(r, str)]
    ramp = spec.get("ramp", 0.0)
    if ramp > 0:  # request i written at i * ramp / n
        loop = asyncio.get_running_loop()
        step = ramp / len(streams) if streams else 0.0
        for i, stream in enumerate(streams):
            loop.call_at(t_connected + i * step, stream.send, request)
        await asyncio.sleep(ramp)
    else:
        for stream in streams:
            stream.send(request)
    t_sent = time.monotonic()
    deadline = ftd + max_tokens * interval + SLACK
    pending: set[asyncio.Future[None]] = set()
    if streams:
        _, pending = await asyncio.wait([s.done for s in streams], timeout=deadline)
    t1 = time.monotonic()
    server_cpu1, client_cpu1 = _cpu_seconds(spec["server_pid"]), _self_cpu()
    probe.cancel()
    for stream in streams:
        if stream.transport is not None:
            stream.transport.abort()
    errors: dict[str, int] = {}
    for r in results:
        reason = r if isinstance(r, str) else r.error
        if isinstance(r, _Counting) and r.done in pending:
            reason = f"unfinished after {deadline:.0f} s"
        if reason:
            errors[reason] = errors.get(reason, 0) + 1
    wall = t1 - t0
    return {
        "n": n,
        "connected": len(streams),
        "complete": sum(1 for s in streams if s.complete),
        "non_200": sum(1 for s in streams if s.status not in (0, 200)),
        "errors": errors,
        "tokens": len(run.delays),
        "expected_tokens": n * max_tokens,
        "delay": _stats(run.delays),
        "first": _stats(run.first),
        "jitter": _stats(run.jitter),
        "head": _stats(run.head),
        "client_lag": _stats(lags),
        "late": sum(1 for d in run.delays if d > LATE_MS),
        "connect_ms": (t_connected - t0) * 1000,
        "send_ms": (t_sent - t_connected) * 1000,
        "wall_s": wall,
        "server_cpu_pct": (server_cpu1 - server_cpu0) / wall * 100,
        "client_cpu_pct": (client_cpu1 - client_cpu0) / wall * 100,
    }


def _client_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    _raise_nofile(spec["n"] + 256)
    row = _run(_client_run(spec))
    print("RESULT " + json.dumps(row), flush=True)


# -- (a) concurrent streams: the parent -----------------------------------------------------------


def concurrency(
    streams: tuple[int, ...] = STREAMS,
    *,
    max_tokens: int = MAX_TOKENS,
    tokens_per_second: float = TOKENS_PER_SECOND,
    first_token_delay: float = FIRST_TOKEN_DELAY,
    ramp: float = 0.0,
) -> list[Row]:
    """One row per N: a fresh server, N clients at once from a client subprocess (with
    ``ramp``, the N requests are written evenly over that many seconds instead)."""
    rows: list[Row] = []
    for n in streams:
        options = f"--max-streams {max(MAX_STREAMS, n)} --tokens-per-second {tokens_per_second:g}"
        options += f" --first-token-delay {first_token_delay:g}"
        with _server(*options.split()) as server:
            idle_rss = _status_mb(server.pid, "VmRSS")
            spec = {
                "port": server.port,
                "n": n,
                "max_tokens": max_tokens,
                "tokens_per_second": tokens_per_second,
                "first_token_delay": first_token_delay,
                "server_pid": server.pid,
                "ramp": ramp,
            }
            timeout = ramp + first_token_delay + max_tokens / tokens_per_second + SLACK + 60
            argv = [sys.executable, str(Path(__file__).resolve()), "--client", json.dumps(spec)]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"n": n, "fatal": f"the client process ran over {timeout:.0f} s"})
                continue
            peak_rss = _status_mb(server.pid, "VmHWM")
            result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not result:
                rows.append(
                    {"n": n, "fatal": f"client exit {done.returncode}: {done.stderr[-500:]}"}
                )
                continue
            row = json.loads(result[0][len("RESULT ") :])
            row.update(n=n, idle_rss_mb=idle_rss, peak_rss_mb=peak_rss)
            row["server_problems"] = server.problems()[:5]
            row["server_log_lines"] = len(server.lines)
            rows.append(row)
    return rows


# -- (b, c) relay ---------------------------------------------------------------------------------


_STAMP = re.compile(rb'"content":" @([0-9]+\.[0-9]+)"')


class _Stamped(_Response):
    """One stream of stamped chunks: each chunk's latency (read time - stamp), or, with
    ``close_after``, the time at which it closed the connection after that many chunks."""

    def __init__(self, latencies: list[float], close_after: int | None = None) -> None:
        super().__init__()
        self.latencies = latencies
        self.close_after = close_after
        self.buffer = b""
        self.chunks = 0
        self.closed_at: float | None = None

    def body(self, data: bytes, t: float) -> None:
        buffer = self.buffer + data
        start = 0
        for _ in range(len(buffer)):
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = buffer[start:end]
            start = end + 2
            m = _STAMP.search(event)
            if m:
                self.latencies.append((t - float(m.group(1))) * 1000)
                self.chunks += 1
                if self.close_after is not None and self.chunks >= self.close_after:
                    self.closed_at = time.monotonic()
                    self._end(None)
                    return
            elif b"[DONE]" in event:
                self.complete = True
                self._end(None)
                return
        self.buffer = buffer[start:]


async def _stamped_streams(
    port: int,
    n: int,
    chunks: int,
    interval: float,
    *,
    close_after: int | None = None,
    ids: tuple[str, ...] | list[str] = (),
) -> tuple[list[float], list[_Stamped]]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    protocols: list[_Stamped] = []
    for _ in range(n):
        _, p = await loop.create_connection(lambda: _Stamped(latencies, close_after), HOST, port)
        protocols.append(p)
    ids = list(ids) or [""] * n
    for p, bench_id in zip(protocols, ids, strict=True):
        body = _chat_body(chunks, model="bench", bench_interval=interval, bench_stamp=True)
        body["bench_id"] = bench_id
        assert p.transport is not None
        p.transport.write(_post("/v1/chat/completions", body, port))
    timeout = chunks * interval + SLACK
    await asyncio.wait([p.done for p in protocols], timeout=timeout)
    for p in protocols:
        if p.transport is not None:
            p.transport.abort()
    return latencies, protocols


def relay(
    *,
    chunks: int = RELAY_CHUNKS,
    interval: float = RELAY_INTERVAL,
    concurrent: int = RELAY_STREAMS,
    repeats: int = 3,
    disconnect_runs: int = DISCONNECT_RUNS,
) -> tuple[list[Row], list[Row]]:
    """Per-chunk latency direct vs relayed (1 stream, and ``concurrent`` streams), and the
    disconnect propagation; two lists of rows."""
    latency_rows: list[Row] = []
    disconnect_rows: list[Row] = []
    with h.firehose() as firehose:
        upstream = f"http://{HOST}:{firehose.port}/v1"
        with _server("--upstream", upstream, "--max-streams", str(MAX_STREAMS)) as server:
            paths = {"direct": firehose.port, "relay": server.port}
            for n in (1, concurrent):
                found: dict[str, list[float]] = {"direct": [], "relay": []}
                cpu: dict[str, float] = {"direct": 0.0, "relay": 0.0}
                wall: dict[str, float] = {"direct": 0.0, "relay": 0.0}
                incomplete = dict.fromkeys(paths, 0)
                for _ in range(repeats):  # interleaved
                    for name, port in paths.items():
                        c0, t0 = _cpu_seconds(server.pid), time.monotonic()
                        lat, protocols = asyncio.run(_stamped_streams(port, n, chunks, interval))
                        cpu[name] += _cpu_seconds(server.pid) - c0
                        wall[name] += time.monotonic() - t0
                        found[name] += lat
                        incomplete[name] += sum(1 for p in protocols if not p.complete)
                direct = _stats(found["direct"])
                for name in paths:
                    s = _stats(found[name])
                    row: Row = {
                        "path": name,
                        "streams": n,
                        "chunks": len(found[name]),
                        "expected": n * chunks * repeats,
                        "incomplete": incomplete[name],
                        **s,
                        "relay_cpu_pct": cpu[name] / wall[name] * 100 if name == "relay" else None,
                    }
                    if name == "relay" and s["p50"] is not None and direct["p50"] is not None:
                        row["added_p50"] = s["p50"] - direct["p50"]
                        row["added_p99"] = s["p99"] - direct["p99"]  # type: ignore[operator]
                    latency_rows.append(row)

            run = uuid.uuid4().hex[:6]
            for name, port in paths.items():
                prefix = f"{run}-{name}-"
                closed: dict[str, float] = {}
                errors = 0
                for i in range(disconnect_runs):
                    bench_id = f"{prefix}{i}"
                    _, protocols = asyncio.run(
                        _stamped_streams(
                            port, 1, 10_000, interval, close_after=CLOSE_AFTER, ids=[bench_id]
                        )
                    )
                    if protocols[0].closed_at is None:
                        errors += 1
                    else:
                        closed[bench_id] = protocols[0].closed_at
                log = h.fetch_disconnects(firehose.base_url, prefix, len(closed))
                seen = {bench_id: entry["t"] for bench_id, entry in log.items()}
                lat = [(seen[i] - t) * 1000 for i, t in closed.items() if i in seen]
                disconnect_rows.append(
                    {
                        "path": name,
                        "runs": disconnect_runs,
                        "seen": len(lat),
                        "errors": errors,
                        "p50": statistics.median(lat) if lat else None,
                        "max": max(lat) if lat else None,
                    }
                )
            problems = server.problems()[:5]
            if problems:
                disconnect_rows.append({"path": "relay log", "problems": problems})
    return latency_rows, disconnect_rows


# -- output ---------------------------------------------------------------------------------------


_STACK = (
    f"import sys; sys.path.insert(0, {str(h.HERE)!r}); import _harness as h; names = "
    "('uvicorn', 'starlette', 'h11', 'httptools', 'uvloop', 'httpx'); "
    "print(' · '.join(h.package_version(n) for n in names))"
)


def header(command: str) -> str:
    """Versions, as the server's Python sees them (uvicorn uses uvloop and httptools when it
    can import them, else asyncio's loop and h11)."""
    try:
        stack = subprocess.run(
            [SERVER_PYTHON, "-c", _STACK], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        stack = f"server stack unknown ({type(exc).__name__})"
    return f"Python {platform.python_version()} · server: {stack} · {h.machine()} · `{command}`"


def concurrency_table(rows: list[Row]) -> str:
    columns = (
        "N | held to the end | <errors | token delay p50 ms | p99 ms | max ms | "
        f"tokens > {LATE_MS:.0f} ms late | response head p50 / p99 ms | "
        "first token delay p50 / p99 ms | later tokens' delay beyond the first's p50 / p99 ms | "
        "server CPU % | server peak RSS MB (idle) | client CPU % | client loop lag p99 ms | "
        "connect all / send all ms"
    )
    body = []
    for row in rows:
        if "fatal" in row:
            body.append([f"{row['n']:,}", "—", row["fatal"], *[""] * 12])
            continue
        errors = "; ".join(f"{count} x {why}" for why, count in row["errors"].items()) or "0"
        tokens = row["tokens"]
        late = f"{row['late'] / tokens * 100:.2f}%" if tokens else "—"
        if tokens != row["expected_tokens"]:
            late += f" of {tokens:,} (expected {row['expected_tokens']:,})"
        delay, head, first, jitter = row["delay"], row["head"], row["first"], row["jitter"]
        body.append([
            f"{row['n']:,}", f"{row['complete']:,} / {row['n']:,}", errors, h.fmt(delay["p50"]),
            h.fmt(delay["p99"]), h.fmt(delay["max"]), late,
            f"{h.fmt(head['p50'])} / {h.fmt(head['p99'])}",
            f"{h.fmt(first['p50'])} / {h.fmt(first['p99'])}",
            f"{h.fmt(jitter['p50'])} / {h.fmt(jitter['p99'])}", h.fmt(row["server_cpu_pct"], ".0f"),
            f"{h.fmt(row['peak_rss_mb'], '.0f')} ({h.fmt(row['idle_rss_mb'], '.0f')})",
            h.fmt(row["client_cpu_pct"], ".0f"), h.fmt(row["client_lag"]["p99"]),
            f"{h.fmt(row['connect_ms'], '.0f')} / {h.fmt(row['send_ms'], '.0f')}",
        ])  # fmt: skip
    return h.table(columns, body)


def relay_table(rows: list[Row]) -> str:
    columns = (
        "<path | streams | chunks read | chunk latency p50 ms | p99 ms | max ms | "
        "relay adds p50 ms | relay adds p99 ms | relay CPU %"
    )
    body = []
    for row in rows:
        chunks = f"{row['chunks']:,}"
        if row["chunks"] != row["expected"] or row["incomplete"]:
            chunks += f" of {row['expected']:,} ({row['incomplete']} streams incomplete)"
        body.append([
            row["path"], row["streams"], chunks, h.fmt(row["p50"], ".3f"), h.fmt(row["p99"], ".3f"),
            h.fmt(row["max"], ".3f"), h.fmt(row.get("added_p50"), "+.3f"),
            h.fmt(row.get("added_p99"), "+.3f"), h.fmt(row["relay_cpu_pct"], ".0f"),
        ])  # fmt: skip
    return h.table(columns, body)


def disconnect_table(rows: list[Row]) -> str:
    columns = "<path | runs | disconnects seen by the upstream | p50 ms | max ms | <notes"
    body = []
    for row in rows:
        if "problems" in row:
            body.append([row["path"], "", "", "", "", " / ".join(row["problems"])[:300]])
            continue
        notes = f"{row['errors']} streams ended before the close" if row["errors"] else ""
        body.append([
            row["path"], row["runs"], row["seen"], h.fmt(row["p50"], ".2f"),
            h.fmt(row["max"], ".2f"), notes,
        ])  # fmt: skip
    return h.table(columns, body)


def targets(c_rows: list[Row], r_rows: list[Row], d_rows: list[Row]) -> str:
    lines = ["Targets:"]
    big = [r for r in c_rows if "fatal" not in r]
    if big:
        row = max(big, key=lambda r: r["n"])
        p99 = row["jitter"]["p99"]
        held = row["complete"] == row["n"]
        lines.append(
            f"- {row['n']:,} concurrent streams held, token delay against the stream's schedule "
            f"(pacing) p99 < {LATE_MS:.0f} ms: {row['complete']:,} / {row['n']:,} held, "
            f"p99 {h.fmt(p99)} ms — {h.verdict(None if p99 is None else held and p99 < LATE_MS)}"
        )
        p99 = row["delay"]["p99"]
        lines.append(
            f"- the same, counted from when each request was written (admission included): "
            f"p99 {h.fmt(p99)} ms — {h.verdict(None if p99 is None else held and p99 < LATE_MS)}"
        )
    for row in r_rows:
        if row["path"] == "relay" and row["streams"] == 1:
            added = row.get("added_p50")
            lines.append(
                f"- relay adds < 1 ms p50 per chunk: {h.fmt(added, '+.3f')} ms — "
                f"{h.verdict(None if added is None else added < 1)}"
            )
    for row in d_rows:
        if row["path"] == "relay":
            worst = row["max"]
            ok = None if worst is None else worst < 50 and row["seen"] == row["runs"]
            lines.append(
                f"- the upstream sees a relayed client's disconnect within 50 ms: "
                f"{row['seen']}/{row['runs']} seen, max {h.fmt(worst, '.2f')} ms — {h.verdict(ok)}"
            )
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> None:
    parser = h.parser(__doc__, ("concurrency", "relay"))
    parser.add_argument("--streams", type=_ints, help="concurrent streams, e.g. 100,500,1000")
    parser.add_argument("--max-tokens", type=int, help=f"tokens a stream (default {MAX_TOKENS})")
    parser.add_argument("--tokens-per-second", type=float, default=TOKENS_PER_SECOND)
    parser.add_argument("--first-token-delay", type=float, default=FIRST_TOKEN_DELAY)
    ramp_help = "write the N requests evenly over this many seconds (default 0: all at once)"
    parser.add_argument("--ramp", type=float, default=0.0, help=ramp_help)
    parser.add_argument("--relay-chunks", type=int, help=f"default {RELAY_CHUNKS}")
    parser.add_argument("--relay-interval", type=float, default=RELAY_INTERVAL)
    python_help = "the Python that runs the servers (e.g. a venv with uvloop and httptools)"
    parser.add_argument("--server-python", default=sys.executable, help=python_help)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the client subprocess's spec
    args = parser.parse_args(argv)
    if args.client:
        _client_main(args.client)
        return
    global SERVER_PYTHON
    SERVER_PYTHON = args.server_python
    command = h.command_line("bench_server.py", argv)
    if args.quick:
        streams, max_tokens, chunks, concurrent, repeats, runs = (20, 30), 15, 30, 10, 1, 5
    else:
        streams, max_tokens, chunks = STREAMS, MAX_TOKENS, RELAY_CHUNKS
        concurrent, repeats, runs = RELAY_STREAMS, 3, DISCONNECT_RUNS
    streams = args.streams or streams
    max_tokens = args.max_tokens or max_tokens
    chunks = args.relay_chunks or chunks
    limit = _raise_nofile(2 * max(streams) + 512)  # the servers inherit it
    rate, ftd = args.tokens_per_second, args.first_token_delay
    ramp, interval = args.ramp, args.relay_interval

    started = time.monotonic()
    print("## jupyter-stream serve: load and relay benchmarks\n")
    print(header(command) + f" · RLIMIT_NOFILE {limit}\n", flush=True)
    c_rows: list[Row] = []
    r_rows: list[Row] = []
    d_rows: list[Row] = []
    if args.only in (None, "concurrency"):
        c_rows = concurrency(
            streams, max_tokens=max_tokens, tokens_per_second=rate, first_token_delay=ftd, ramp=ramp
        )
        ramped = (
            f"requests written evenly over {ramp:g} s"
            if ramp > 0
            else "all N requests written at once"
        )
        h.section(
            f"Concurrent streams: demo model, {rate:g} tokens/s, first token after {ftd:g} s, "
            f"{max_tokens} tokens a stream, {ramped}; delay = "
            "read time - (request written + first_token_delay + k / tokens_per_second)",
            concurrency_table(c_rows),
        )
        for row in c_rows:
            if row.get("server_problems"):
                print(f"Server log, N = {row['n']}: " + " / ".join(row["server_problems"]) + "\n")
    if args.only in (None, "relay"):
        r_rows, d_rows = relay(
            chunks=chunks,
            interval=interval,
            concurrent=concurrent,
            repeats=repeats,
            disconnect_runs=runs,
        )
        h.section(
            f"Relay overhead per chunk: firehose one chunk every {interval * 1000:g} ms, "
            f"{chunks} chunks a stream, {repeats} run(s) interleaved; latency = read time - the "
            "firehose's stamp",
            relay_table(r_rows),
        )
        h.section(
            f"Disconnect propagation: the client closes after {CLOSE_AFTER} chunks; latency = "
            "the firehose sees its stream end - the client's close",
            disconnect_table(d_rows),
        )
    print(targets(c_rows, r_rows, d_rows))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
