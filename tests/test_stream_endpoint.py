"""``GET /stream?content=…``: the content goes to the model as the user message, and the answer's
text comes back as a plain event stream (``retry:``, an ``id:`` and ``data:`` lines per piece,
``event: done``): the demo model's answer in demo mode, the upstream's in relay mode."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import ended_since
from llmock_server import MODELS, LLMock

from jupyter_stream.server import BackgroundServer
from jupyter_stream.server._models import demo_answer, tokenize
from jupyter_stream.sse import ServerSentEvent, SSEDecoder

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
LONG = " ".join(f"word{i}" for i in range(400))  # 400 chunks at 20 ms: outlasts every test
MULTILINE = "first line\nsecond line\n\n- a list item: Grüße 🚀\r\nlast"
MakeServer = Callable[..., BackgroundServer]


def root(server: BackgroundServer) -> str:
    return server.base_url.removesuffix("/v1")


def get_stream(
    server: BackgroundServer, headers: dict[str, str] | None = None, **params: str
) -> tuple[httpx.Response, bytes, list[ServerSentEvent]]:
    with httpx.stream(
        "GET", f"{root(server)}/stream", params=params, headers=headers, timeout=WAIT
    ) as response:
        raw = response.read()
    decoder = SSEDecoder()
    return response, raw, decoder.feed(raw) + decoder.flush()


def text_of(events: list[ServerSentEvent]) -> str:
    return "".join(event.data for event in events if event.event == "message")


def assert_framed(raw: bytes) -> None:
    """Every line of the body is a field (or a blank line ending an event): a newline in the
    text became a second ``data:`` line, never a bare line."""
    for line in raw.decode().split("\n"):
        assert line == "" or line.startswith(("data: ", "id: ", "event: ", "retry: ")), line


# -- demo mode -------------------------------------------------------------------------------------


def test_the_demo_model_answers_the_content(demo_server: BackgroundServer) -> None:
    question = "What is a server-sent event?"
    response, raw, events = get_stream(demo_server, content=question)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw.startswith(b"retry: 3000\n\n")
    answer = text_of(events)
    assert answer == demo_answer(question) and answer != question
    tokens = [event for event in events if event.event == "message"]
    assert [event.data for event in tokens] == tokenize(answer)  # a token an event
    assert [event.id for event in tokens] == [str(i) for i in range(len(tokens))]
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")


def test_multi_line_text_is_framed_as_several_data_lines(demo_server: BackgroundServer) -> None:
    _, raw, events = get_stream(demo_server, content="Tell me about framing.")
    assert_framed(raw)
    multiline = [e.data for e in events if e.event == "message" and "\n" in e.data]
    assert multiline, "demo's answer has line breaks: some token carries one"
    assert text_of(events) == demo_answer("Tell me about framing.")


def test_last_event_id_resumes_after_that_token(demo_server: BackgroundServer) -> None:
    _, _, events = get_stream(demo_server, content="resume me")
    tokens = [event for event in events if event.event == "message"]
    _, _, resumed = get_stream(demo_server, {"Last-Event-ID": "9"}, content="resume me")
    again = [event for event in resumed if event.event == "message"]
    assert [(e.id, e.data) for e in again] == [(e.id, e.data) for e in tokens[10:]]
    assert resumed[-1].event == "done"


def test_echo_answers_with_the_content_and_an_unknown_model_is_a_404(
    demo_server: BackgroundServer,
) -> None:
    _, raw, events = get_stream(demo_server, content=MULTILINE, model="echo")
    assert text_of(events) == MULTILINE.replace("\r\n", "\n")
    assert_framed(raw)
    response, _, _ = get_stream(demo_server, content="hi", model="gpt-9")
    assert response.status_code == 404
    assert "gpt-9" in response.text and "demo and echo" in response.text


def test_a_client_leaving_ends_the_paced_stream(make_server: MakeServer) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    before = len(server.app.state.server.ended)
    decoder = SSEDecoder()
    url = f"{root(server)}/stream"
    with httpx.stream("GET", url, params={"content": "hi"}, timeout=WAIT) as response:
        for data in response.iter_raw():
            if any(event.event == "message" for event in decoder.feed(data)):
                break  # the first token: the client goes
    [log] = ended_since(server, before)
    assert log["end"] == "client disconnected"
    assert log["tokens"] < len(tokenize(demo_answer("hi")))


def test_a_server_stopping_ends_the_stream_with_an_error_event(make_server: MakeServer) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    decoder = SSEDecoder()
    url = f"{root(server)}/stream"
    with httpx.stream("GET", url, params={"content": "hi"}, timeout=WAIT) as response:
        raw = response.iter_raw()
        for data in raw:
            if any(event.event == "message" for event in decoder.feed(data)):
                break
        server.stop()
        events = [event for data in raw for event in decoder.feed(data)] + decoder.flush()
    assert events[-1].event == "error"  # not a data event, which would read as answer text
    said = json.loads(events[-1].data)["error"]["message"]
    assert said == "the server ended this stream: server shutting down"


# -- relay mode ------------------------------------------------------------------------------------


@pytest.fixture
def relay(mock: LLMock, make_server: MakeServer) -> BackgroundServer:
    return make_server(upstream=mock.base_url("chat"), upstream_api_key="sk-relay")


def nonce() -> str:
    return f"n{uuid.uuid4().hex[:12]}"


def reply(**fields: Any) -> dict[str, Any]:
    return {"type": "reply", "match": {"provider": "openai", "stream": True}, **fields}


def test_relay_mode_streams_the_upstreams_answer(mock: LLMock, relay: BackgroundServer) -> None:
    marker = nonce()
    response, raw, events = get_stream(relay, content=f"say {marker}", model=MODELS["chat"])
    assert response.status_code == 200 and raw.startswith(b"retry: 3000\n\n")
    pieces = [event for event in events if event.event == "message"]
    assert len(pieces) > 1 and marker in text_of(events)  # llmock's echo quotes the question
    assert [event.id for event in pieces] == [str(i) for i in range(len(pieces))]
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")
    record = mock.record(marker)
    assert record["path"] == "/v1/chat/completions"
    assert (record["stream"], record["completed"], record["model"]) == (True, True, "gpt-4o")
    assert record["body"]["messages"] == [{"role": "user", "content": f"say {marker}"}]


def test_relay_mode_frames_multi_line_text(mock: LLMock, relay: BackgroundServer) -> None:
    mock.script(reply(text=MULTILINE))
    _, raw, events = get_stream(relay, content="hi", model=MODELS["chat"])
    assert text_of(events) == MULTILINE.replace("\r\n", "\n")
    assert_framed(raw)


def test_relay_mode_a_client_leaving_closes_the_upstream(
    mock: LLMock, relay: BackgroundServer
) -> None:
    mock.script(reply(text=LONG))
    marker = nonce()
    decoder = SSEDecoder()
    params = {"content": f"go {marker}", "model": MODELS["chat"]}
    with httpx.stream("GET", f"{root(relay)}/stream", params=params, timeout=WAIT) as response:
        for data in response.iter_raw():
            if any(event.event == "message" for event in decoder.feed(data)):
                break  # the first piece: the client goes
    record = mock.record(marker)
    assert record["completed"] is False, record
    assert record["chunks_sent"] < len(LONG.split()), record


def test_relay_mode_model_from_the_config_else_a_400_that_names_the_fix(
    mock: LLMock, make_server: MakeServer
) -> None:
    relay = make_server(upstream=mock.base_url("chat"), upstream_model="gpt-4o-mini")
    marker = nonce()
    _, _, events = get_stream(relay, content=f"say {marker}")
    assert marker in text_of(events)
    assert mock.record(marker)["model"] == "gpt-4o-mini"
    bare = make_server(upstream=mock.base_url("chat"))
    response, _, _ = get_stream(bare, content="hi")
    assert response.status_code == 400
    assert "?model=" in response.text and "--upstream-model" in response.text


def test_relay_mode_upstream_errors_keep_their_status_or_end_the_stream_with_an_error_event(
    mock: LLMock, relay: BackgroundServer
) -> None:
    said = f"not allowed {nonce()}"
    mock.script({"type": "fail", "status": 403, "message": said})
    response, _, _ = get_stream(relay, content="hi", model=MODELS["chat"])
    assert response.status_code == 403 and said in response.text
    fault = {"type": "stream_fault", "kind": "disconnect", "after_chunks": 6}
    mock.script(reply(text=LONG), fault)
    response, _, events = get_stream(relay, content="hi", model=MODELS["chat"])
    assert response.status_code == 200 and text_of(events).startswith("word0")
    assert events[-1].event == "error"
    error = json.loads(events[-1].data)["error"]
    assert "failed mid-answer" in error["message"] and "sk-relay" not in error["message"]


def test_relay_mode_a_reconnect_is_told_to_stop(relay: BackgroundServer, mock: LLMock) -> None:
    response, raw, _ = get_stream(relay, {"Last-Event-ID": "3"}, content="hi", model="gpt-4o")
    assert (response.status_code, raw) == (204, b"")  # an EventSource stops reconnecting
    assert mock.requests() == []  # nothing was asked of the upstream


def test_relay_mode_with_a_demo_upstream_gets_the_demo_answer(
    demo_server: BackgroundServer, make_server: MakeServer
) -> None:
    relay = make_server(upstream=demo_server.base_url, upstream_model="demo")
    _, raw, events = get_stream(relay, content="Relay me.")
    assert text_of(events) == demo_answer("Relay me.")
    assert_framed(raw)
