"""What the stream policies cost end to end (``stop_when`` / ``stop_sequences`` rules, the
registry's preemption), with benchmarks/firehose.py in its own process; figures, not pass/fail.

(a) ``rules()``: a 20,000-chunk answer of " tok" read with ``astream_chat`` under each rule set
    (none; 10 patterns that never match; 10 that never match but get partway every chunk; a
    plain predicate; 3 stop sequences), each set checked live and never matching first. *bulk*:
    ~80 chunks a read; *one chunk per read*: paced at 1 ns, so the rules run ~20,000 times.
    Wall and client CPU time, best and median after a warm-up, cases interleaved; reads counted
    by wrapping ``Engine._commit`` in every run alike.
(b) ``preemption()``: ``max_concurrent=100, when_full="preempt"``; 100 streams of priority 0
    read a paced answer, then from ``t0`` 100 of priority 1 start and preempt them all: time to
    all ``async for`` ends, all ``aclose()`` returns, all disconnects the firehose saw (same
    clock). Each run is followed by a reference burst with no limit.
"""

from __future__ import annotations

import asyncio
import gc
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import _harness as h

from jupyter_stream import StopOn, StopReason, astream_chat, registry, stop_on
from jupyter_stream import _engine as _engine_module  # the read counter only

N_CHUNKS = 20_000
TOKEN = " tok"  # the content of every firehose chunk (firehose._TOKEN_EVENT)
RUN_DEADLINE = 120.0

# (b)
N_STREAMS = 100
WARM_DELTAS = 3  # deltas each low-priority stream iterates before the burst
INTERVAL = 0.02  # seconds between chunks of the preemption runs' streams
PACED_MAX_TOKENS = 10_000  # 200 s at 20 ms: never reached, a bound
STREAM_DEADLINE = 30.0

Row = h.Row

# -- the rules ------------------------------------------------------------------------------------

# Words a moderation list might hold; none shares a word with " tok tok ...".
PLAIN_WORDS = [
    "password", "secret key", "credit card number", "api_key", "ssn", "confidential",
    "forbidden", "kill switch",
]  # fmt: skip
PLAIN_REGEXES = [
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # a US social security number
    re.compile(r"sk-[A-Za-z0-9]{20,}"),  # an API key (no bound on its length: a 256 window)
]
# Words and regexes that look like the text, so that the engine gets partway into a match at
# every " tok" (a phrase of four "tok"s then "stop" fails only at its fifth word), yet never
# match it: every "tok" in the text is followed by a space or the end.
LOOKALIKE_WORDS = [
    "token", "tokens", "toke", "tokyo", "took", "tok-tok", "tok tok tok tok stop", "tok tok done",
]  # fmt: skip
LOOKALIKE_REGEXES = [
    re.compile(r"(?:\btok\s+){8}end\b"),  # eight "tok"s then "end"
    re.compile(r"\btok\w+"),  # "tok" and more letters
]
STOP_SEQUENCES = ["</answer>", "\nUser:", "###"]


# name, astream_chat options
RULE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("no rules", {}),
    (
        "stop_on: 8 words + 2 regexes, never matching",
        {"stop_when": stop_on(PLAIN_WORDS, PLAIN_REGEXES)},
    ),
    (
        "stop_on: 8 words + 2 regexes that look like the text (partial matches at every tok)",
        {"stop_when": stop_on(LOOKALIKE_WORDS, LOOKALIKE_REGEXES)},
    ),
    (
        'predicate `lambda text: "forbidden" in text` (whole text per read)',
        {"stop_when": lambda text: "forbidden" in text},
    ),
    ("stop_sequences: 3, never present", {"stop_sequences": STOP_SEQUENCES}),
]
BASELINE = RULE_CASES[0][0]
STOP_ON_CASES = (RULE_CASES[1][0], RULE_CASES[2][0])

# name, firehose bench_interval
MODES: list[tuple[str, float]] = [
    ("bulk (~16 KiB writes)", 0.0),
    ("one chunk per read (paced, 1 ns interval)", 1e-9),
]


def check_rules(n: int = N_CHUNKS) -> list[str]:
    """Problems with the rule sets, if any: each must stop on a text holding one of its words,
    and none may match the firehose's text (``TOKEN * n``), not even at its end."""
    text = TOKEN * n
    problems = []
    for name, options in RULE_CASES:
        rule = options.get("stop_when")
        if isinstance(rule, StopOn):
            if rule.scanner().feed(text, lambda: text, final=True) is not None:
                problems.append(f"{name}: matches the firehose's text")
            for word in rule.words:
                sample = f"{text} {word} tok"
                if rule.scanner().feed(sample, lambda s=sample: s, final=True) is None:
                    problems.append(f"{name}: does not stop on {word!r}")
        elif callable(rule) and (rule(text) or not rule(text + " forbidden")):
            problems.append(f"{name}: the predicate is wrong")
        for sequence in options.get("stop_sequences", []):
            if sequence in text:
                problems.append(f"{name}: {sequence!r} is in the text")
    for regex in (*PLAIN_REGEXES, *LOOKALIKE_REGEXES):
        if regex.search(text):
            problems.append(f"regex {regex.pattern!r} matches the text")
    return problems


# -- (a) rules ------------------------------------------------------------------------------------


@contextmanager
def counting_reads() -> Iterator[list[int]]:
    """Count the stream's commits (one per network read that carried events) while inside;
    yields a one-element list holding the count. Restores ``Engine._commit`` on exit."""
    counter = [0]
    engine = getattr(_engine_module, "Engine", None)
    original = getattr(engine, "_commit", None)
    if engine is None or original is None:  # the engine changed shape: no count
        counter[0] = -1
        yield counter
        return

    def commit(self: Any, chunks: Any) -> bool:
        counter[0] += 1
        return original(self, chunks)

    engine._commit = commit
    try:
        yield counter
    finally:
        engine._commit = original


async def _read_one(base_url: str, interval: float, n: int, options: dict[str, Any]) -> Row:
    deltas = 0
    t = time.perf_counter()
    cpu = time.process_time()
    paced = {"max_tokens": n, "bench_interval": interval, "timeout": RUN_DEADLINE}
    stream = h.firehose_chat(astream_chat, base_url, **paced, **options)
    async for _delta in stream:
        deltas += 1
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    await stream.aclose()
    problem = None
    if stream.stop_reason is not StopReason.COMPLETED:
        problem = f"ended {stream.stop_reason}: {stream.stop_detail or stream.error}"
    elif deltas != n or stream.text != TOKEN * n:
        problem = f"{deltas} deltas, {len(stream.text)} characters"
    return {
        "seconds": seconds,
        "cpu": cpu,
        "deltas": deltas,
        "chunks": stream.stats.chunks,
        "problem": problem,
    }


def rules(base_url: str, *, repeats: int = 11, n: int = N_CHUNKS) -> list[Row]:
    """One row per (mode, rule case); best/median of ``repeats`` after a warm-up, interleaved."""
    keys = [
        (mode, interval, name, options) for mode, interval in MODES for name, options in RULE_CASES
    ]
    settings = {(mode, name): (interval, options) for mode, interval, name, options in keys}
    runner = h.Runner()

    def measure(case: tuple[str, str]) -> Row:
        interval, options = settings[case]
        with counting_reads() as reads:
            coro = _read_one(base_url, interval, n, options)
            sample = runner.run(asyncio.wait_for(coro, RUN_DEADLINE))
        sample["reads"] = reads[0]
        if sample["problem"]:
            raise h.Problem(sample["problem"])
        return sample

    try:
        samples, problems = h.interleaved(list(settings), measure, repeats=repeats)
    finally:
        runner.close()

    rows: list[Row] = []
    for mode, _interval, name, _options in keys:
        got = samples[(mode, name)]
        row: Row = {
            "mode": mode,
            "case": name,
            "runs": len(got),
            "problem": problems.get((mode, name)),
        }
        if got:
            seconds = [s["seconds"] for s in got]
            reads = [s["reads"] for s in got]
            row.update(
                best=min(seconds),
                median=statistics.median(seconds),
                cpu=statistics.median(s["cpu"] for s in got),
                reads=statistics.median(reads) if min(reads) >= 0 else None,
                reads_range=(min(reads), max(reads)),
                chunks=statistics.median(s["chunks"] for s in got),
            )
        rows.append(row)
    base = {row["mode"]: row for row in rows if row["case"] == BASELINE}
    for row in rows:
        ref = base[row["mode"]]
        if "best" not in row or "best" not in ref:
            continue
        row["over_best"] = (row["best"] / ref["best"] - 1) * 100
        row["over_median"] = (row["median"] / ref["median"] - 1) * 100
        row["over_cpu"] = (row["cpu"] / ref["cpu"] - 1) * 100
        reads = row.get("reads")
        row["us_per_read"] = (row["median"] - ref["median"]) / reads * 1e6 if reads else None
        row["chunks_per_read"] = row["chunks"] / reads if reads else None
    return rows


# -- (b) preemption -------------------------------------------------------------------------------


def _open(bench_id: str, priority: int, base_url: str) -> Any:
    options = {"timeout": STREAM_DEADLINE, "idle_timeout": 10, "priority": priority}
    paced = {"max_tokens": PACED_MAX_TOKENS, "bench_interval": INTERVAL, "bench_id": bench_id}
    return h.firehose_chat(astream_chat, base_url, **options, **paced)


async def _burst(base_url: str, prefix: str, n: int, *, preempt: bool = True) -> Row:
    """One burst: n low-priority streams running, then n high-priority ones at once. With
    ``preempt`` the registry's limit (set by the caller) preempts the low ones; without, nothing
    is preempted (the reference: what starting n streams costs the loop by itself)."""
    lows = [_open(f"{prefix}low{k}", 0, base_url) for k in range(n)]
    iterated: list[list[str]] = [[] for _ in range(n)]
    ended_at: list[float | None] = [None] * n
    released_at: list[float | None] = [None] * n
    warm = h.Countdown(n)

    async def consume_low(k: int) -> None:
        got = 0
        try:
            async for delta in lows[k]:
                iterated[k].append(delta)
                got += 1
                if got == WARM_DELTAS:
                    warm.done()
        finally:
            ended_at[k] = time.monotonic()
            if got < WARM_DELTAS:  # ended early: do not hold the others up
                warm.done()
            await lows[k].aclose()
            released_at[k] = time.monotonic()

    low_tasks = [asyncio.create_task(consume_low(k)) for k in range(n)]
    await asyncio.wait_for(warm.event.wait(), STREAM_DEADLINE)
    gc.collect()

    highs: list[Any] = []
    first_at: list[float | None] = [None] * n
    firsts = h.Countdown(n)

    async def consume_high(k: int) -> None:
        try:
            async for _delta in highs[k]:
                if first_at[k] is None:
                    first_at[k] = time.monotonic()
                    firsts.done()
        finally:
            if first_at[k] is None:  # ended without a delta: do not hold the others up
                firsts.done()

    t0 = time.monotonic()
    highs.extend(_open(f"{prefix}high{k}", 1, base_url) for k in range(n))
    high_tasks = [asyncio.create_task(consume_high(k)) for k in range(n)]
    high_reasons: list[str] = []
    live_after = None
    if preempt:
        await asyncio.wait_for(asyncio.gather(*low_tasks, return_exceptions=True), STREAM_DEADLINE)
        high_reasons = [str(s.stop_reason) for s in highs if s.stop_reason is not None]
        live_after = len(registry.streams())
    # Let every high-priority stream get its first delta, then stop them all.
    try:
        await asyncio.wait_for(firsts.event.wait(), STREAM_DEADLINE)
    except TimeoutError:
        pass  # reported: fewer than n first deltas
    stopped = registry.stop_all()
    tasks = [*low_tasks, *high_tasks]
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), STREAM_DEADLINE)
    await asyncio.wait_for(asyncio.gather(*(s.aclose() for s in highs)), STREAM_DEADLINE)

    kept = sum(1 for k in range(n) if lows[k].text.startswith("".join(iterated[k])))
    unshown = sum(len(lows[k].text) - len("".join(iterated[k])) for k in range(n))
    reasons = [lows[k].stop_reason for k in range(n)]
    return {
        "t0": t0,
        "ended": [t - t0 for t in ended_at if t is not None],
        "released": [t - t0 for t in released_at if t is not None],
        "first": [t - t0 for t in first_at if t is not None],
        "preempted": sum(1 for r in reasons if r is StopReason.PREEMPTED),
        "other_reasons": sorted({str(r) for r in reasons if r is not StopReason.PREEMPTED}),
        "kept": kept,
        "unshown": unshown,
        "high_ended_early": high_reasons,
        "live_after": live_after,
        "stopped": stopped,
        "left": len(registry.streams()),
    }


def preemption(base_url: str, *, runs: int = 10, n: int = N_STREAMS) -> Row:
    """``runs`` bursts of n over n, each followed by a reference burst with no limit; figures in
    ms from each burst's start, with the checks."""
    tag = uuid.uuid4().hex[:6]
    h.reset_disconnects(base_url)
    samples: list[Row] = []
    references: list[Row] = []
    runner = h.Runner()
    try:
        for r in range(runs + 1):  # run 0 is the warm-up
            prefix = f"{tag}-{r}-"
            registry.configure(max_concurrent=n, when_full="preempt")
            sample = runner.run(_burst(base_url, prefix, n))
            seen = h.fetch_disconnects(base_url, f"{prefix}low", n)
            sample["server"] = [entry["t"] - sample["t0"] for entry in seen.values()]
            registry.configure(max_concurrent=None)
            reference = runner.run(_burst(base_url, f"{prefix}ref-", n, preempt=False))
            if r > 0:
                samples.append(sample)
                references.append(reference)
    finally:
        try:
            registry.stop_all()
        finally:
            registry.configure(max_concurrent=None, when_full="preempt")
            runner.close()
    return {"runs": runs, "n": n, "samples": samples, "references": references}


# -- output ---------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def rules_table(rows: list[Row], mode: str) -> str:
    columns = (
        "<rules | best s | median s | overhead (best) | overhead (median) | "
        "client CPU s (median) | CPU overhead | reads = rule checks (median, range) | "
        "chunks per read | extra µs per read | <runs"
    )
    body = []
    for row in rows:
        if row["mode"] != mode:
            continue
        if "best" not in row:
            body.append([row["case"], *["—"] * 9, row["problem"]])
            continue
        low, high = row["reads_range"]
        reads = "—" if row["reads"] is None else f"{row['reads']:,.0f} ({low:,} to {high:,})"
        runs = f"{row['runs']}, all complete"
        if row["problem"]:
            runs += f"; then: {row['problem']}"
        base = row["case"] == BASELINE
        body.append([
            row["case"], f"{row['best']:.3f}", f"{row['median']:.3f}",
            "—" if base else _pct(row["over_best"]), "—" if base else _pct(row["over_median"]),
            f"{row['cpu']:.3f}", "—" if base else _pct(row["over_cpu"]), reads,
            h.fmt(row.get("chunks_per_read"), ".1f"),
            "—" if base else h.fmt(row.get("us_per_read"), ".2f"), runs,
        ])  # fmt: skip
    return h.table(columns, body)


def _ms(values: list[float]) -> tuple[str, str]:
    if not values:
        return "—", "—"
    return f"{statistics.median(values) * 1000:.2f}", f"{max(values) * 1000:.2f}"


def preemption_table(result: Row) -> str:
    n, samples, refs = result["n"], result["samples"], result["references"]
    first = f"all {n} high-priority streams had their first delta"
    milestones = [
        (f"all {n} low-priority consumers saw stop_reason preempted", "ended", samples),
        (f"all {n} released their connections (`await stream.aclose()` returned)", "released",
         samples),
        (f"the server saw all {n} disconnects", "server", samples),
        (first, "first", samples),
        (f"reference, no limit (nothing preempted, {2 * n} streams open): {first}", "first", refs),
    ]  # fmt: skip
    body = []
    for label, key, runs in milestones:
        alls = [max(s[key]) for s in runs if s[key]]
        each = [t for s in runs for t in s[key]]
        counted = [len(s[key]) for s in runs]
        per = h.fmt(statistics.median(each) * 1000 if each else None, ".2f")
        got = f"all {n} in every run" if set(counted) == {n} else ", ".join(map(str, counted))
        body.append([label, len(alls), *_ms(alls), per, got])
    columns = (
        "<from the burst's start until | runs | all n: median ms | all n: max ms | "
        "per stream: median ms | <streams counted"
    )
    return h.table(columns, body)


def preemption_checks(result: Row) -> str:
    n, samples = result["n"], result["samples"]
    total = n * len(samples)
    preempted = sum(s["preempted"] for s in samples)
    kept = sum(s["kept"] for s in samples)
    unshown = sum(s["unshown"] for s in samples)
    others = sorted({r for s in samples for r in s["other_reasons"]})
    high_early = sorted({r for s in samples for r in s["high_ended_early"]})
    live = sorted({s["live_after"] for s in samples if s["live_after"] is not None})
    left = sorted({s["left"] for s in samples})
    stopped = sorted({s["stopped"] for s in samples})
    lines = [
        f"- low-priority streams ended with stop_reason preempted: {preempted}/{total}"
        + (f" (others: {', '.join(others)})" if others else ""),
        f"- preempted streams whose `.text` starts with all their consumer iterated: "
        f"{kept}/{total} (characters received but not iterated: {unshown})",
        f"- high-priority streams that ended before the low ones were all gone: "
        f"{len(high_early)}" + (f" ({', '.join(high_early)})" if high_early else ""),
        f"- `len(registry.streams())` once the burst had settled: {', '.join(map(str, live))} "
        f"(max_concurrent={n}); `registry.stop_all()` then stopped "
        f"{', '.join(map(str, stopped))}, and after `aclose()` there were "
        f"{', '.join(map(str, left))} left",
    ]
    return "\n".join(lines)


def targets(rows: list[Row]) -> str:
    lines = ["Targets:"]
    for row in rows:
        if row["case"] not in STOP_ON_CASES:
            continue
        over = row.get("over_median")
        verdict = h.verdict(None if over is None else over < 10)
        lines.append(
            f"- stop_on overhead < 10% of end-to-end time, {row['mode']}, {row['case']}: "
            f"{_pct(over)} median ({_pct(row.get('over_best'))} best) — {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = h.parser(__doc__, ("rules", "preemption"), "fewer repeats (a smoke run)").parse_args(
        argv
    )
    command = h.command_line("bench_policies.py", argv)
    repeats, runs = (2, 3) if args.quick else (11, 10)

    print("## jupyter_stream: stream policies (rules, preemption)\n")
    print(h.clients_header(command) + "\n")
    problems = check_rules()
    if problems:
        print("**The rule sets are not what this benchmark needs:** " + "; ".join(problems) + "\n")
    rule_rows: list[Row] = []
    with h.firehose() as server:
        base_url = server.base_url
        if args.only in (None, "rules"):
            rule_rows = rules(base_url, repeats=repeats)
            for mode, _interval in MODES:
                h.section(
                    f"stop_when / stop_sequences: {N_CHUNKS:,} chunks, {mode} "
                    f"(best and median of {repeats} after a warm-up, interleaved)",
                    rules_table(rule_rows, mode),
                )
        if args.only in (None, "preemption"):
            result = preemption(base_url, runs=runs)
            h.section(
                f"Preemption: {N_STREAMS} streams of priority 0 running, then {N_STREAMS} "
                f"of priority 1 at once (max_concurrent={N_STREAMS}, when_full='preempt'; "
                f"{runs} runs after a warm-up)",
                preemption_table(result),
            )
            print(preemption_checks(result) + "\n", flush=True)
    if rule_rows:
        print(targets(rule_rows))


if __name__ == "__main__":
    main()
