"""%%chat and ChatPanel in a real kernel, jupyter_client acting as the frontend, against our server
on 127.0.0.1. Buttons are clicked and sliders moved by the comm messages a browser would send."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ENV_VARS, ended, ended_since
from kernel_harness import Execution, Kernel, Message, comm_id_of, reply_view_id
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream._render import render_markdown, safe_markdown_source
from jupyter_stream._wire import wire_format
from jupyter_stream.server import BackgroundServer, ServerConfig
from jupyter_stream.server._models import answer_tokens

pytestmark = pytest.mark.timeout(120)

LONG = "--max-tokens 20000"  # a reply that would take minutes: it must be stopped
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def paced() -> Iterator[BackgroundServer]:
    """The demo model at 100 tokens/s: a reply spans many frames."""
    with BackgroundServer(ServerConfig(tokens_per_second=100, first_token_delay=0)) as server:
        yield server


@pytest.fixture(scope="module")
def kernel(paced: BackgroundServer) -> Iterator[Kernel]:
    env = {name: "" for name in ENV_VARS}
    env |= {"JUPYTER_STREAM_BASE_URL": paced.base_url, "JUPYTER_STREAM_MODEL": "demo"}
    kernel = Kernel({k: v for k, v in env.items() if v or k not in os.environ})
    try:
        kernel.ok("%load_ext jupyter_stream")
        yield kernel
    finally:
        kernel.shutdown()


@pytest.fixture(autouse=True)
def fresh_conversation(request: pytest.FixtureRequest) -> None:
    if "kernel" in request.fixturenames:
        request.getfixturevalue("kernel").ok("%chat reset all")


def demo_text(prompt: str, tokens: int) -> str:
    pieces = answer_tokens("demo", [{"role": "user", "content": prompt}], endless=True)
    return "".join(piece for _, piece in zip(range(tokens), pieces, strict=False))


def after_frames(count: int, act: Any) -> Any:
    """An on_message hook that acts once, when the ReplyView has sent ``count`` frames."""
    seen = {"frames": 0, "done": False}

    def hook(message: Message) -> None:
        content = message["content"]
        if (
            message["msg_type"] == "comm_msg"
            and content["data"].get("method") == "custom"
            and not seen["done"]
        ):
            seen["frames"] += 1
            if seen["frames"] == count:
                seen["done"] = True
                act(message)

    return hook


def test_a_chat_cell_streams_in_frames_then_leaves_an_ordinary_output(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    run = kernel.run("%%chat --max-tokens 150\nWhat is a stream?")
    assert run.status == "ok", kernel.error_of(run)
    frames = run.frames
    assert len(frames) >= 3, "the reply arrived in one piece"
    assert any(frame.get("t") for frame in frames) and any(frame.get("a") for frame in frames)
    # The widgets' display is replaced by the reply: no widget view is left, nothing twice.
    [shown] = run.of_type("display_data")
    assert WIDGET_VIEW in shown["content"]["data"]
    final = run.final
    assert final["transient"]["display_id"] == shown["content"]["transient"]["display_id"]
    assert WIDGET_VIEW not in final["data"]
    text = demo_text("What is a stream?", 150)
    assert final["data"]["text/plain"] == text + "\n[cut at the token limit]"
    assert final["data"]["text/markdown"].startswith(text.split("\n")[0])
    facts = final["metadata"]["jupyter_stream"]
    assert facts["model"] == "demo" and facts["stop_reason"] == "length"
    assert facts["tokens"] == 150 and facts["time_to_first_token"] is not None
    assert facts["usage"]["completion_tokens"] == 150
    # Every widget the cell made is closed: a saved notebook refers to none.
    opened = {m["content"]["comm_id"] for m in run.of_type("comm_open")}
    closed = {m["content"]["comm_id"] for m in run.of_type("comm_close")}
    assert opened and opened == closed
    assert not run.of_type("execute_result")


# Stop, the slider, an interrupt and Run All's order are tested on every kernel stack, this
# environment's newest among them, in test_kernel_matrix.py.


def test_the_conversation_goes_on_and_keeps_a_stopped_turn_marked(kernel: Kernel) -> None:
    execution = kernel.submit(f"%%chat {LONG}\nFirst question.")
    kernel.wait(
        execution,
        after_frames(2, lambda _m: kernel.click(comm_id_of(execution, description="Stop"))),
    )
    kernel.ok("%%chat -m echo\nSecond question.")
    history = kernel.ok("%chat history").stdout()
    assert "[1] you: First question." in history and "[stopped by the user]" in history
    assert "[2] you: Second question." in history
    sent = kernel.ok(
        "import jupyter_stream._magic as m\n"
        "print([x['role'] for x in m._active.sessions['default'].messages()])"
    ).stdout()
    assert sent.strip() == "['user', 'assistant', 'user', 'assistant']"
    kernel.ok("%%chat --new -m echo\nAfresh.")
    assert "First question" not in kernel.ok("%chat history").stdout()


def test_model_output_cannot_inject_html(kernel: Kernel) -> None:
    attack = "Hi <script>alert(1)</script> <img src=x onerror=alert(2)> [x](javascript:alert(3))"
    run = kernel.run(f"%%chat -m echo\n{attack}")
    assert run.status == "ok", kernel.error_of(run)
    sent = [str(frame) for frame in run.frames] + [run.final["data"]["text/html"]]
    for html in sent:
        assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in run.final["data"]["text/html"]
    markdown = run.final["data"]["text/markdown"]
    assert "<script" not in markdown and "<img" not in markdown
    assert "](javascript:" not in markdown
    assert run.final["data"]["text/plain"] == attack  # the text itself is kept as it came


def test_options_and_errors(kernel: Kernel, paced: BackgroundServer) -> None:
    bad = kernel.run("%%chat --temperature warm\nHi")
    assert bad.status == "error"
    stderr = "".join(m["content"]["text"] for m in bad.of_type("stream"))
    assert "UsageError" in stderr and "--temperature" in stderr
    assert not bad.of_type("error")  # a usage error, shown without a traceback
    missing = kernel.run("%%chat -m no-such-model\nHi")
    assert missing.status == "error"
    assert "no-such-model" in kernel.error_of(missing)
    assert "%chat models" in kernel.error_of(missing)
    models = kernel.ok("%chat models").stdout()
    assert "* demo" in models and "echo" in models
    config = kernel.ok("%config ChatMagics.timeout = 42\n%chat config").stdout()
    assert "42 s" in config and paced.base_url.removeprefix("http://") in config
    kernel.ok("%config ChatMagics.timeout = 120.0")
    name = "ana"
    kernel.ok(f"who = {name!r}")
    run = kernel.ok('%%chat -m echo\nHello {who}, keep {"json": 1} and {undefined}.')
    assert run.final["data"]["text/plain"] == 'Hello ana, keep {"json": 1} and {undefined}.'
    helped = kernel.ok("%%chat?")
    assert "--max-tokens" in str(helped.messages) or "--max-tokens" in str(helped.reply)


def test_background_returns_a_handle_to_await(kernel: Kernel) -> None:
    run = kernel.ok("%%chat --background --max-tokens 25 -o later\nIn the background.")
    [result] = run.of_type("execute_result")
    assert "ChatTask" in result["content"]["data"]["text/plain"]
    awaited = kernel.ok("text = await _\nprint(text == later, len(text) > 0)")
    assert awaited.stdout() == "True True\n"


# -- ChatPanel ------------------------------------------------------------------------------------


def panel(kernel: Kernel, server: BackgroundServer) -> tuple[Execution, str, str]:
    """Make a panel; the comm ids of its prompt box and of its Stop button."""
    run = kernel.ok(
        "from jupyter_stream import ChatPanel\n"
        f"panel = ChatPanel(base_url={server.base_url!r}, max_tokens=20000)\npanel"
    )
    prompt = next(
        comm_id
        for comm_id, state in _opens(run)
        if "jupyter-stream-prompt" in str(state.get("_esm", ""))
    )
    return run, prompt, comm_id_of(run, description="Stop")


def _opens(run: Execution) -> Iterator[tuple[str, dict[str, Any]]]:
    for message in run.of_type("comm_open"):
        yield message["content"]["comm_id"], message["content"]["data"]["state"]


def wait_for_frames(kernel: Kernel, count: int) -> None:
    """Read iopub until a ReplyView has sent ``count`` frames (no cell is running)."""
    seen = 0
    while seen < count:
        message = kernel._next()
        data = message["content"].get("data")
        if message["msg_type"] == "comm_msg" and data.get("method") == "custom":
            seen += 1


def test_chat_panel_send_stop_and_supersede(kernel: Kernel, paced: BackgroundServer) -> None:
    _run, prompt, stop = panel(kernel, paced)
    kernel.send_comm(prompt, {"method": "custom", "content": {"event": "submit", "text": "One"}})
    wait_for_frames(kernel, 3)
    kernel.send_comm(prompt, {"method": "custom", "content": {"event": "submit", "text": "Two"}})
    wait_for_frames(kernel, 3)
    kernel.click(stop)
    result = kernel.ok(
        "await panel.wait()\n"
        "print([(t.prompt, str(t.stop_reason), len(t.answer) > 0) for t in panel.session.turns])"
    ).stdout()
    assert result.strip() == "[('One', 'superseded', True), ('Two', 'stopped', True)]"
    models = kernel.ok("print(panel.model_picker.options)").stdout()
    assert "'demo'" in models and "'echo'" in models


def test_chat_panel_send_button_takes_the_prompt_box_text(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    run, prompt, _stop = panel(kernel, paced)
    send = comm_id_of(run, description="Send")
    kernel.set_state(prompt, value="Three")
    kernel.click(send)
    wait_for_frames(kernel, 1)
    kernel.ok("panel.stop()\nawait panel.wait()")
    said = kernel.ok("print(panel.session.turns[0].prompt, panel.stream.stop_reason)").stdout()
    assert said == "Three stopped\n"


def test_a_notebook_run_by_nbclient_holds_the_whole_reply(
    paced: BackgroundServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", paced.base_url)
    monkeypatch.setenv("JUPYTER_STREAM_MODEL", "demo")
    cells = [
        "%load_ext jupyter_stream",
        "%%chat --max-tokens 120\nExplain <b>streams</b>.",
        "%%chat -m echo\n<img src=x onerror=alert(1)>",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    path = tmp_path / "chat.ipynb"
    nbformat.write(notebook, path)
    reopened = nbformat.read(path, as_version=4)
    [output] = reopened.cells[1].outputs
    assert output.output_type == "display_data"
    assert WIDGET_VIEW not in output.data
    assert output.data["text/plain"] == demo_text("Explain <b>streams</b>.", 120) + (
        "\n[cut at the token limit]"
    )
    assert output.metadata["jupyter_stream"]["stop_reason"] == "length"
    html, _ = HTMLExporter().from_notebook_node(reopened)
    assert "Explain &lt;b&gt;streams&lt;/b&gt;" in html
    assert "<img src=x" not in html and '<img src="x"' not in html
    assert "model not found" not in html


def test_shell_quoting_of_options(kernel: Kernel) -> None:
    system = "You answer in one word."
    run = kernel.ok(f"%%chat --new -m echo -s {shlex.quote(system)}\nWord?")
    assert run.final["data"]["text/plain"] == "Word?"
    assert f"system: {system}" in kernel.ok("%chat history").stdout()


def test_a_view_that_appears_mid_reply_gets_the_whole_reply_so_far(kernel: Kernel) -> None:
    execution = kernel.submit(f"%%chat {LONG}\nLate view.")
    state = {"synced": False, "stopped": False}

    def act(message: Message) -> None:
        data = message["content"].get("data", {})
        if message["msg_type"] != "comm_msg" or data.get("method") != "custom":
            return
        frames = execution.frames
        if len(frames) == 20 and not state["synced"]:
            state["synced"] = True
            view = reply_view_id(execution)
            sync = {"method": "custom", "content": {"event": "sync"}}
            kernel.send_comm(view, sync, on_behalf_of=execution)
        elif data["content"].get("reset") and not state["stopped"]:
            state["stopped"] = True
            kernel.click(comm_id_of(execution, description="Stop"))

    kernel.wait(execution, act)
    [reset] = [frame for frame in execution.frames if frame.get("reset")]
    before = execution.frames[: execution.frames.index(reset)]
    # The reset carries every finished block sent so far, and the tail as it stood.
    assert reset["a"][: sum(len(f.get("a", [])) for f in before)] == [
        block for frame in before for block in frame.get("a", [])
    ]
    assert reset["a"] and reset["s"]


# -- interruption policies ------------------------------------------------------------------------


def test_a_stop_on_word_ends_the_cell_moderated_and_the_output_names_the_rule(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    before = len(ended(paced))
    run = kernel.run("%%chat --stop-on disconnect --max-tokens 2000\nExplain streaming")
    assert run.status == "ok", kernel.error_of(run)
    facts = run.final["metadata"]["jupyter_stream"]
    assert facts["stop_reason"] == "moderated"
    assert facts["stop_detail"] == "word 'disconnect' matched 'disconnect'"
    mark = "[stopped by a moderation rule: word 'disconnect' matched 'disconnect']"
    plain = run.final["data"]["text/plain"]
    assert plain.endswith("\n" + mark)
    text = plain.removesuffix("\n" + mark)
    assert "disconnect" in text and text == demo_text("Explain streaming", facts["tokens"])
    assert "moderation rule: word" in run.final["data"]["text/markdown"]
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


def test_chat_streams_lists_the_live_streams_and_stop_all_stops_them(kernel: Kernel) -> None:
    kernel.ok(f"%%chat --background {LONG} --priority 3 --session a\nFirst question")
    kernel.ok("first = _")
    kernel.ok(f"%%chat --background {LONG} --session b\nSecond question")
    kernel.ok("second = _")
    table = kernel.ok("%chat streams").stdout().splitlines()
    assert table[0].split() == ["#", "state", "model", "age", "tokens", "priority", "question"]
    rows = [line.split() for line in table[1:]]
    assert [(row[1], row[2], row[-3], row[-2:]) for row in rows] == [
        ("streaming", "demo", "3", ["First", "question"]),
        ("streaming", "demo", "0", ["Second", "question"]),
    ]
    assert kernel.ok("%chat stop all").stdout() == "stopped 2 streams\n"
    said = kernel.ok(
        "await first\nawait second\n"
        "print(first.stream.stop_reason, second.stream.stop_reason, len(first.stream.text) > 0)"
    ).stdout()
    assert said == "stopped stopped True\n"
    assert kernel.ok("%chat streams").stdout() == "(no live streams)\n"


def test_chat_limit_refuses_a_stream_over_the_cap(kernel: Kernel) -> None:
    try:
        limit = kernel.ok("%chat limit 1 refuse").stdout()
        assert limit == "at most 1 stream at once; a new one beyond that: refuse\n"
        kernel.ok(f"%%chat --background {LONG} --session a\nTake the only slot")
        refused = kernel.run("%%chat --session b\nAnd me?")
        assert refused.status == "error"
        error = kernel.error_of(refused)
        assert error.startswith("1 stream is running, the limit (max_concurrent=1")
        assert "Fix: stop one" in error
        number = kernel.ok(
            "from jupyter_stream import registry\nprint(registry.streams()[0].number)"
        ).stdout()
        kernel.ok(f"%chat stop {number.strip()}")
        assert kernel.ok("%chat streams").stdout() == "(no live streams)\n"
    finally:
        kernel.ok("%chat stop all\n%chat limit none preempt")


def test_a_chat_panel_without_supersede_asks_the_next_question_when_the_reply_ends(
    kernel: Kernel, paced: BackgroundServer
) -> None:
    run = kernel.ok(
        "from jupyter_stream import ChatPanel\n"
        f"panel = ChatPanel(base_url={paced.base_url!r}, max_tokens=40, supersede=False)\n"
        "panel.send('One')\npanel.send('Two')\npanel"
    )
    assert run.status == "ok"
    said = kernel.ok(
        "print(panel.status.value)\nawait panel.wait()\n"
        "print([(t.prompt, str(t.stop_reason)) for t in panel.session.turns])\n"
        "print([m['content'][:3] for m in panel.stream.messages])"
    ).stdout()
    waiting, turns, sent = said.splitlines()
    assert "1 question waiting for the reply to end" in waiting
    assert turns == "[('One', 'length'), ('Two', 'length')]"
    assert sent == "['One', demo_text_start, 'Two']".replace(
        "demo_text_start", repr(demo_text("One", 40)[:3])
    )


# -- errors: the message, not the package's frames ------------------------------------------------

REFUSED = "http://127.0.0.1:1/v1"  # nothing listens on port 1: the connection is refused
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(execution: Execution) -> str:
    """The error output's traceback as the user reads it (colours removed)."""
    [error] = execution.of_type("error")
    shown = ANSI.sub("", "\n".join(error["content"]["traceback"]))
    assert execution.reply is not None
    if execution.status == "error":  # what nbclient and papermill report: the same
        assert ANSI.sub("", "\n".join(execution.reply["content"]["traceback"])) == shown
    return shown


def test_a_refused_connection_shows_its_message_without_the_package_frames(
    kernel: Kernel,
) -> None:
    failed = kernel.submit(f"%%chat --base-url {REFUSED}\nHi")
    queued = kernel.submit("print('Run All went on')")
    kernel.wait(queued)
    assert failed.status == "error"  # nbclient and papermill fail loudly
    assert queued.status == "aborted"  # Run All stops at the failed cell
    assert failed.reply is not None and failed.reply["content"]["ename"] == "ConnectError"
    shown = error_text(failed)
    assert shown.strip() == (
        "ConnectError: could not connect to 127.0.0.1:1 (connection refused). Fix: start the "
        "server, or point base_url (base_url argument) at the port it listens on."
    )
    assert "jupyter_stream" not in shown and "Traceback" not in shown
    # The reply's output (here: how it ended) is in place before the error below it.
    kinds = [m["msg_type"] for m in failed.messages]
    assert kinds.index("update_display_data") < kinds.index("error")
    assert failed.final["metadata"]["jupyter_stream"]["stop_reason"] == "error"
    # %tb shows the whole traceback: the package's frames and the connection error under it.
    whole = error_text(kernel.run("%tb"))
    assert "Traceback (most recent call last)" in whole
    assert "jupyter_stream/_magic.py" in whole and "jupyter_stream/_engine.py" in whole
    assert "The above exception was the direct cause" in whole  # httpx's error, chained
    assert whole.rstrip().endswith(shown.strip())


def test_an_error_mid_reply_keeps_what_arrived_above_its_message(
    kernel: Kernel, server: ScriptedServer
) -> None:
    async def fails_midway(_request: Request, response: Response) -> None:
        await response.event(chunk("What arrived "))
        await response.event(chunk("before the error."))
        await response.event({"error": {"message": "the model is overloaded", "type": "busy"}})
        await response.end()

    server.handler = fails_midway
    run = kernel.run(f"%%chat --base-url {server.url} -m scripted\nHi")
    assert run.status == "error"
    final = run.final
    assert final["data"]["text/plain"].startswith("What arrived before the error.")
    assert final["metadata"]["jupyter_stream"]["stop_reason"] == "error"
    shown = error_text(run).strip()
    assert shown.startswith("APIError: ") and "the model is overloaded" in shown
    assert "\n" not in shown and "jupyter_stream" not in shown


def test_configuration_errors_of_chat_and_percent_chat_show_their_message(
    kernel: Kernel,
) -> None:
    cell = kernel.run("%%chat --base-url localhost:1/v1\nHi")
    assert cell.status == "error"
    shown = error_text(cell).strip()
    assert shown.startswith("ConfigurationError: base_url argument must be an http://")
    assert "jupyter_stream" not in shown and "\n" not in shown
    try:
        line = kernel.run("%config ChatMagics.base_url = 'localhost:1/v1'\n%chat config")
        assert line.status == "error"
        shown = error_text(line).strip()
        assert shown.startswith("ConfigurationError: ") and "http://localhost:1/v1" in shown
        assert "jupyter_stream" not in shown and "\n" not in shown
    finally:
        kernel.ok("%config ChatMagics.base_url = None")


def test_a_bug_in_the_package_still_shows_its_traceback(kernel: Kernel) -> None:
    kernel.ok(
        "import jupyter_stream._magic as _m\n_kept_bundle = _m._bundle\n"
        "def _broken(*args, **kwargs):\n    raise RuntimeError('a bug in jupyter_stream')\n"
        "_m._bundle = _broken"
    )
    try:
        run = kernel.run("%%chat -m echo\nHi")
    finally:
        kernel.ok("_m._bundle = _kept_bundle")
    assert run.status == "error"
    shown = error_text(run)
    assert "Traceback (most recent call last)" in shown
    assert "jupyter_stream/_magic.py" in shown  # the package's own frames, where the bug is
    assert shown.rstrip().endswith("RuntimeError: a bug in jupyter_stream")


def test_a_chat_panel_shows_its_errors_in_the_panel_without_a_traceback(
    kernel: Kernel,
) -> None:
    run = kernel.ok(
        "from jupyter_stream import ChatPanel\n"
        f"failing = ChatPanel(base_url={REFUSED!r})\n"
        "failing.send('Hi')\nawait failing.wait()\n"
        "print(failing.status.value)\nprint(failing.transcript.children[-1].children[-1].value)"
    )
    assert not run.of_type("error")
    assert not [m for m in run.of_type("stream") if m["content"]["name"] == "stderr"]
    status, footer = run.stdout().splitlines()
    for shown in (status, footer):
        assert "could not connect to 127.0.0.1:1 (connection refused)" in shown
        assert "Traceback" not in shown and "jupyter_stream/" not in shown
    made = kernel.run("ChatPanel(base_url='localhost:1/v1')")
    assert made.status == "error"
    shown = error_text(made).strip()
    assert shown.startswith("ConfigurationError: base_url argument must be an http://")
    assert "jupyter_stream" not in shown and "\n" not in shown


# -- a long reply of one Markdown block -----------------------------------------------------------

TABLE_ROWS = 12_000
MAKE_TABLE = (
    'table = "| # | name | note |\\n| ---: | --- | --- |\\n" + "".join('
    f'f"| {{i}} | item {{i}} | <b>{{i}}</b> |\\n" for i in range({TABLE_ROWS}))'
)


@pytest.fixture(scope="module")
def fast() -> Iterator[BackgroundServer]:
    """The built-in models at 3,000 tokens/s: deltas arrive faster than frames are drawn."""
    with BackgroundServer(ServerConfig(tokens_per_second=3000, first_token_delay=0)) as server:
        yield server


@pytest.mark.parametrize("action", ["stop", "slider", "interrupt"])
def test_stop_slider_and_interrupt_act_mid_reply_of_a_long_table(
    kernel: Kernel, fast: BackgroundServer, action: str
) -> None:
    """A 12,000-row table, one Markdown block, arriving fast: its rows join the table already
    shown frame by frame; Stop, the slider or an interrupt ends the cell (the server sees the
    disconnect), and the final output is the table as received, rendered whole and escaped."""
    namespace: dict[str, Any] = {}
    exec(MAKE_TABLE, namespace)  # the same table, here, to compare with
    table: str = namespace["table"]
    kernel.ok(MAKE_TABLE)
    before = len(ended(fast))
    execution = kernel.submit(
        f"%%chat --new -m echo --base-url {fast.base_url} --timeout 600\n{{table}}"
    )
    continued: list[int] = []

    def act_when_rows_flow(message: Message) -> None:
        content = message["content"]
        if message["msg_type"] != "comm_msg" or content["data"].get("method") != "custom":
            return
        pieces = content["data"]["content"].get("a") or []
        if any(isinstance(piece, dict) for piece in pieces):  # rows into the table shown
            continued.append(1)
            if len(continued) != 20:
                return
            if action == "stop":
                kernel.click(comm_id_of(execution, description="Stop"))
            elif action == "slider":
                kernel.set_state(comm_id_of(execution, description="Timeout (s)"), value=1.0)
            else:
                kernel.interrupt()

    kernel.wait(execution, act_when_rows_flow)
    assert len(continued) >= 20
    reason, mark = {
        "stop": ("stopped", "stopped by the user"),
        "slider": ("timeout", "stopped: the time limit passed"),
        "interrupt": ("interrupted", "interrupted"),
    }[action]
    assert execution.status == ("error" if action == "interrupt" else "ok")
    final = execution.final
    assert final["metadata"]["jupyter_stream"]["stop_reason"] == reason
    text = final["data"]["text/plain"].removesuffix(f"\n[{mark}]")
    assert text != final["data"]["text/plain"] and table.startswith(text)
    assert 0 < len(text) < len(table)
    html = final["data"]["text/html"]
    assert f'<div class="jupyter-stream-reply">{render_markdown(text)}</div>' in html
    assert html.count("<table>") == 1 and "<b>" not in html
    assert final["data"]["text/markdown"].startswith(safe_markdown_source(text))
    assert ended_since(fast, before)[-1]["end"] == "client disconnected"


def test_a_lone_surrogate_in_a_reply_still_ends_the_cell_and_the_conversation_goes_on(
    kernel: Kernel, server: ScriptedServer
) -> None:
    """A server that escapes a lone surrogate ("\\ud800", valid JSON, not text): the cell ends
    with its output, and the next cell, whose history holds the reply, works."""

    async def surrogate(request: Request, response: Response) -> None:
        for piece in ["Hello ", "\ud800", " world"]:
            await response.event(chunk(piece))
        await response.event(chunk(finish_reason="stop"))
        await response.event("[DONE]")
        await response.end()

    server.handler = surrogate
    first = kernel.run(f"%%chat --base-url {server.url}\nSay it.")
    assert first.status == "ok", kernel.error_of(first)
    assert first.final["data"]["text/plain"] == "Hello \ufffd world"
    assert first.final["metadata"]["jupyter_stream"]["stop_reason"] == "completed"
    server.reset()  # the default answer: "Hello, world!"
    second = kernel.run(f"%%chat --base-url {server.url}\nAgain.")
    assert second.status == "ok", kernel.error_of(second)
    assert second.final["data"]["text/plain"] == "Hello, world!"
    sent = server.requests[-1].json()["messages"]
    assert [m["content"] for m in sent] == ["Say it.", "Hello \ufffd world", "Again."]


# -- the other APIs: api= in each front end -----------------------------------------------------

NATIVE_APIS = ("responses", "anthropic", "gemini", "ollama")


def api_root(url: str, api: str) -> str:
    """A server's base URL (``…/v1``) for ``api``, as that API's official SDK takes it."""
    return url.removesuffix("/v1") + wire_format(api).root


def stop_mid_reply(kernel: Kernel, execution: Execution, server: BackgroundServer) -> set[str]:
    """Click Stop once the reply has sent 3 frames; the APIs the server's live exchanges spoke
    just then (what the request's path and headers said, as the server read them)."""
    spoken: set[str] = set()

    def click(_message: Message) -> None:
        state = server.app.state.server
        with state.changed:
            spoken.update(exchange.api for exchange in state.exchanges)
        kernel.click(comm_id_of(execution, description="Stop"))

    kernel.wait(execution, after_frames(3, click))
    return spoken


def assert_stopped_with_the_demo_answer(kernel: Kernel, execution: Execution, prompt: str) -> None:
    assert execution.status == "ok", kernel.error_of(execution)
    facts = execution.final["metadata"]["jupyter_stream"]
    assert facts["stop_reason"] == "stopped" and facts["model"] == "demo"
    assert 0 < facts["tokens"] < 20000
    plain = execution.final["data"]["text/plain"]
    assert plain.endswith("\n[stopped by the user]")
    text = plain.removesuffix("\n[stopped by the user]")
    assert text and demo_text(prompt, 20000).startswith(text)  # the partial answer, kept


@pytest.mark.parametrize("api", NATIVE_APIS)
def test_chat_on_each_native_api_streams_the_demo_answer_and_stop_keeps_it(
    kernel: Kernel, paced: BackgroundServer, api: str
) -> None:
    before = len(ended(paced))
    prompt = f"Tell me everything, {api}."
    base_url = api_root(paced.base_url, api)
    execution = kernel.submit(f"%%chat --api {api} --base-url {base_url} {LONG}\n{prompt}")
    assert stop_mid_reply(kernel, execution, paced) == {api}
    assert_stopped_with_the_demo_answer(kernel, execution, prompt)
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


async def scripted_ollama(request: Request, response: Response) -> None:
    """Ollama's model list and a two-piece NDJSON answer; 404 on any other path."""
    if request.path == "/api/tags":
        await response.whole(200, json.dumps({"models": [{"name": "llama3.2"}, {"name": "qwen3"}]}))
    elif request.path == "/api/chat":
        await response.start(content_type="application/x-ndjson")
        for piece in ["Over ", "NDJSON."]:
            line = {"model": "qwen3", "message": {"role": "assistant", "content": piece}}
            await response.send(json.dumps(line | {"done": False}) + "\n")
        last = {"model": "qwen3", "message": {"role": "assistant", "content": ""}, "done": True}
        await response.send(json.dumps(last | {"done_reason": "stop", "eval_count": 2}) + "\n")
        await response.end()
    else:
        await response.whole(404, json.dumps({"error": f"no route {request.path}"}))


def test_the_api_traitlet_the_cells_option_models_config_and_a_bad_name(
    kernel: Kernel, paced: BackgroundServer, server: ScriptedServer
) -> None:
    bad = kernel.run("%%chat --api claude\nHi")
    assert bad.status == "error"
    shown = error_text(bad).strip()
    assert shown.startswith("ConfigurationError: api='claude' is not an API jupyter_stream speaks")
    for name in ("chat", *NATIVE_APIS):
        assert repr(name) in shown
    assert "jupyter_stream/" not in shown and "\n" not in shown
    try:
        kernel.ok(
            "%config ChatMagics.api = 'anthropic'\n"
            f"%config ChatMagics.base_url = {api_root(paced.base_url, 'anthropic')!r}"
        )
        config = kernel.ok("%chat config").stdout()
        assert "API          anthropic — %config ChatMagics.api" in config
        execution = kernel.submit(f"%%chat {LONG}\nOver Messages.")
        assert stop_mid_reply(kernel, execution, paced) == {"anthropic"}
        assert_stopped_with_the_demo_answer(kernel, execution, "Over Messages.")
        # A cell's --api wins over the traitlet, for that cell.
        cell = f"%%chat --api chat --base-url {paced.base_url} {LONG}\nOver chat."
        execution = kernel.submit(cell)
        assert stop_mid_reply(kernel, execution, paced) == {"chat"}
        assert_stopped_with_the_demo_answer(kernel, execution, "Over chat.")
        # %chat models lists the configured API's models.
        server.handler = scripted_ollama
        kernel.ok(
            "%config ChatMagics.api = 'ollama'\n"
            f"%config ChatMagics.base_url = {api_root(server.url, 'ollama')!r}\n"
            "%config ChatMagics.model = 'qwen3'"
        )
        models = kernel.ok("%chat models").stdout()
        assert models.splitlines() == ["  llama3.2", "* qwen3"]
        assert [request.path for request in server.requests] == ["/api/tags"]
        kernel.ok("%config ChatMagics.api = 'claude'")
        refused = kernel.run("%chat models")
        assert refused.status == "error"
        stderr = "".join(m["content"]["text"] for m in refused.of_type("stream"))
        assert "UsageError: api='claude' is not an API" in stderr  # short, no traceback
        assert "'anthropic'" in stderr and not refused.of_type("error")
    finally:
        kernel.ok(
            "%config ChatMagics.api = None\n%config ChatMagics.base_url = None\n"
            "%config ChatMagics.model = None"
        )


def test_a_chat_panel_on_another_api_lists_its_models_and_streams(
    kernel: Kernel, server: ScriptedServer
) -> None:
    server.handler = scripted_ollama
    said = kernel.ok(
        "from jupyter_stream import ChatPanel\n"
        f"p = ChatPanel(api='ollama', base_url={api_root(server.url, 'ollama')!r}, model='qwen3')\n"
        "await p.wait()\nprint(p.api, list(p.model_picker.options))\n"
        "p.send('Which API?')\nawait p.wait()\n"
        "print(p.stream.stop_reason, repr(p.stream.text), repr(p.session.turns[-1].answer))"
    ).stdout()
    assert said.splitlines() == [
        "ollama ['llama3.2', 'qwen3']",
        "completed 'Over NDJSON.' 'Over NDJSON.'",
    ]
    assert [request.path for request in server.requests] == ["/api/tags", "/api/chat"]
    sent = server.requests[-1].json()
    assert sent["model"] == "qwen3" and sent["messages"][-1]["content"] == "Which API?"
    made = kernel.run("ChatPanel(api='claude')")
    assert made.status == "error"
    assert error_text(made).strip().startswith("ConfigurationError: api='claude'")
