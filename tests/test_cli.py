"""The jupyter-stream command, run as a user runs it: in a subprocess, with signals."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from scripted_server import ACTED_ON, HOSTILE, Request, Response, ScriptedServer, chunk, hostile

from jupyter_stream import stream_chat
from jupyter_stream.server._models import demo_answer

WAIT = 30  # seconds: a guard against hangs, never a timing assertion
COMMAND = [sys.executable, "-m", "jupyter_stream"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], input=stdin, capture_output=True, text=True, timeout=WAIT
    )


def test_chat_streams_the_demo_answer_with_no_configuration() -> None:
    done = run("chat", "What is SSE?", "--max-tokens", "12")
    assert done.returncode == 0, done.stderr
    assert demo_answer("What is SSE?").startswith(done.stdout.rstrip("\n"))
    assert re.fullmatch(r"\[length · demo · 12 tokens in [\d.]+ s.*\]\n", done.stderr)


def test_chat_reads_the_prompt_from_stdin() -> None:
    done = run("chat", "-", "--model", "echo", stdin="hello from a pipe")
    assert (done.returncode, done.stdout) == (0, "hello from a pipe\n"), done.stderr


def test_ctrl_c_stops_at_once_keeps_the_partial_reply_and_exits_130() -> None:
    with subprocess.Popen(
        [*COMMAND, "chat", "Tell me a long story."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        first = process.stdout.read1(65536)  # blocks until the reply has begun
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=WAIT)
    shown = (first + rest).decode()
    whole = demo_answer("Tell me a long story.")
    assert process.returncode == 130, err
    assert shown.strip() and whole.startswith(shown.rstrip("\n"))
    assert len(shown) < len(whole)
    assert b"[interrupted \xc2\xb7 demo" in err
    assert b"Traceback" not in err


def test_models_lists_the_endpoints_models() -> None:
    done = run("models")
    assert (done.returncode, done.stdout) == (0, "demo\necho\n"), done.stderr


def test_chat_and_models_speak_the_api_asked_for_even_with_nothing_configured() -> None:
    done = run("chat", "What is SSE?", "--max-tokens", "12", "--api", "anthropic")
    assert done.returncode == 0, done.stderr
    assert demo_answer("What is SSE?").startswith(done.stdout.rstrip("\n"))
    assert re.fullmatch(r"\[length · demo · 12 tokens in [\d.]+ s.*\]\n", done.stderr)
    listed = run("models", "--api", "gemini")
    assert (listed.returncode, listed.stdout) == (0, "demo\necho\n"), listed.stderr


# The paths each API's requests take below the host (what the server's log line shows).
API_PATHS = {
    "responses": ("/v1", "POST /v1/responses", "GET /v1/models"),
    "anthropic": ("", "POST /v1/messages", "GET /v1/models"),
    "gemini": ("", "POST /v1beta/models/demo:streamGenerateContent", "GET /v1beta/models"),
    "ollama": ("", "POST /api/chat", "GET /api/tags"),
}


def test_chat_and_models_send_each_apis_own_requests() -> None:
    with serving("--tokens-per-second", "0") as (process, banner):
        assert process.stderr is not None
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)/v1", banner)
        assert match, banner
        for api, (root, chat_request, models_request) in API_PATHS.items():
            base_url = match.group(1) + root
            done = run("chat", "hi", "--api", api, "--base-url", base_url, "-m", "demo")
            assert done.returncode == 0, done.stderr
            assert demo_answer("hi").startswith(done.stdout.rstrip("\n"))
            assert f'"{chat_request}" 200' in process.stderr.readline(), api
            listed = run("models", "--api", api, "--base-url", base_url)
            assert (listed.returncode, listed.stdout) == (0, "demo\necho\n"), listed.stderr
            assert f'"{models_request}" 200' in process.stderr.readline(), api


@pytest.mark.parametrize("command", [("chat", "hi"), ("models",)])
def test_an_unknown_api_is_one_line_naming_the_apis_and_exit_1(command: tuple[str, ...]) -> None:
    done = run(*command, "--api", "claude")
    assert done.returncode == 1 and not done.stdout
    assert done.stderr.startswith("jupyter-stream: api='claude' is not an API")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    for name in ("chat", "responses", "anthropic", "gemini", "ollama"):
        assert repr(name) in done.stderr


def test_an_unreachable_endpoint_is_one_clear_line_and_exit_1() -> None:
    done = run("chat", "hi", "--base-url", "http://127.0.0.1:1/v1", "-m", "x")
    assert done.returncode == 1
    assert done.stderr.startswith("jupyter-stream: could not connect to 127.0.0.1:1")
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_public_address_without_a_key() -> None:
    done = run("serve", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "--api-key" in done.stderr


@contextlib.contextmanager
def serving(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``jupyter-stream serve --port 0 OPTIONS`` and its banner line; Ctrl-C at the end."""
    with subprocess.Popen(
        [*COMMAND, "serve", "--port", "0", *options], stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        yield process, process.stderr.readline()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=WAIT)


def test_serve_logs_one_line_per_request_and_stops_on_ctrl_c() -> None:
    with serving("--tokens-per-second", "0") as (process, banner):
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/v1)", banner)
        assert match, banner
        stream = stream_chat("hi", model="demo", base_url=match.group(1), max_tokens=5)
        assert len(list(stream)) == 5
        assert process.stderr is not None
        line = process.stderr.readline()
    assert '"POST /v1/chat/completions" 200' in line
    assert "model=demo" in line and "tokens=5" in line and "end=length" in line
    assert process.returncode == 0


def test_chat_into_a_closed_pipe_stops_quietly() -> None:
    done = subprocess.run(
        f"{sys.executable} -m jupyter_stream chat 'hello there' | head -c 4",
        shell=True,
        capture_output=True,
        text=True,
        timeout=WAIT,
        executable="/bin/bash",
    )
    assert done.stdout == "# He"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_serve_never_shows_credentials_from_the_upstream_url() -> None:
    with serving("--upstream", "http://me:pw123@127.0.0.1:9/v1?k=q1") as (_, banner):
        pass
    assert "relaying to http://127.0.0.1:9/v1" in banner
    assert "pw123" not in banner and "q1" not in banner


# --- a hostile server: nothing it sends may reach the terminal as a control sequence


def test_a_hostile_reply_and_model_name_reach_the_terminal_without_escapes(
    server: ScriptedServer,
) -> None:
    server.handler = hostile
    done = run("chat", "hi", "--base-url", server.url, "-m", "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hi hidden there\n"  # hidden text shown, nothing else
    assert not ACTED_ON.search(done.stderr), repr(done.stderr)
    assert " · evilhidden · " in done.stderr


def test_a_hostile_error_message_is_printed_without_escapes(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        error = {"error": {"message": f"bad{HOSTILE}", "type": "invalid_request_error"}}
        await response.whole(400, json.dumps(error))

    server.handler = handler
    done = run("chat", "hi", "--base-url", server.url, "-m", "x")
    assert done.returncode == 1
    assert done.stderr.startswith("jupyter-stream: ") and "badhidden" in done.stderr
    assert not ACTED_ON.search(done.stderr), repr(done.stderr)


def test_an_error_event_mid_reply_keeps_the_reply_and_has_no_escapes(
    server: ScriptedServer,
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.event(chunk("kept \x1b]0;"))  # a sequence the error cuts off
        await response.event({"error": {"message": f"overloaded{HOSTILE}"}})
        await response.end()

    server.handler = handler
    done = run("chat", "hi", "--base-url", server.url, "-m", "x")
    assert done.returncode == 1
    assert done.stdout == "kept 0;\n"  # what arrived stays, its unfinished sequence as text
    assert "overloadedhidden" in done.stderr
    assert not ACTED_ON.search(done.stderr), repr(done.stderr)


def test_hostile_model_ids_are_listed_without_escapes(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        ids = ["gpt-ok", f"evil{HOSTILE}", "two\nlines"]
        await response.whole(200, json.dumps({"data": [{"id": i} for i in ids]}))

    server.handler = handler
    done = run("models", "--base-url", server.url)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["evilhidden", "gpt-ok", "two lines"]
