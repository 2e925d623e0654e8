"""Relay mode for every native API: our server in front of a real upstream.

llmock (a mock server from PyPI that we did not write, one ``llmock serve`` process) is the
upstream of the Responses, Anthropic and Gemini relays; the scripted server is the upstream where
a test must see the request the relay sent (its headers, its URL) or must write an answer llmock
cannot (Ollama's NDJSON, which llmock does not speak; a connection cut mid-line).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from conftest import ended_since
from google import genai
from google.genai import types as genai_types
from llmock_server import MODELS, PROVIDERS, LLMock
from scripted_server import Request, Response, ScriptedServer

from jupyter_stream.server import BackgroundServer, ServerConfig
from jupyter_stream.server._models import demo_answer, tokenize
from jupyter_stream.server._relay import Relay
from jupyter_stream.sse import ServerSentEvent, SSEDecoder

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
APIS = ["responses", "anthropic", "gemini"]
LONG = " ".join(f"word{i}" for i in range(400))  # 400 chunks at 20 ms: outlasts every test
FAULT_AFTER = 6  # chunks before a fault: some text has arrived on every API by then
RELAY_KEY = "sk-relay-upstream-0123456789"
CLIENT_KEY = "sk-client-9876543210"
MakeServer = Callable[..., BackgroundServer]


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def relay(mock: LLMock, api: str, make_server: MakeServer) -> BackgroundServer:
    """Our server relaying to llmock, its base URL as ``api``'s official SDK takes it."""
    return make_server(upstream=mock.base_url(api), upstream_api_key=RELAY_KEY)


def root(server: BackgroundServer) -> str:
    return server.base_url.removesuffix("/v1")


def nonce() -> str:
    """A marker put in the prompt: it finds the request in llmock's journal."""
    return f"n{uuid.uuid4().hex[:12]}"


def native(api: str, prompt: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A streamed request in ``api``'s own shape: its path, body and headers (the client's own
    key among them, which the relay must not pass on)."""
    if api == "responses":
        body: dict[str, Any] = {"model": MODELS[api], "input": prompt, "stream": True}
        return "/v1/responses", body, {"Authorization": f"Bearer {CLIENT_KEY}"}
    if api == "anthropic":
        message = {"role": "user", "content": prompt}
        body = {"model": MODELS[api], "max_tokens": 4096, "messages": [message], "stream": True}
        return "/v1/messages", body, {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    path = f"/v1beta/models/{MODELS[api]}:streamGenerateContent?alt=sse&key={CLIENT_KEY}"
    return path, body, {}


def texts(api: str, events: list[ServerSentEvent]) -> list[str]:
    """The answer's text pieces, read from ``api``'s own events."""
    pieces = []
    for event in events:
        data = json.loads(event.data)
        if api == "responses" and event.event == "response.output_text.delta":
            pieces.append(data["delta"])
        elif api == "anthropic" and event.event == "content_block_delta":
            pieces.append(data["delta"].get("text", ""))
        elif api == "gemini" and "candidates" in data:
            parts = data["candidates"][0].get("content", {}).get("parts", [])
            pieces += [part.get("text", "") for part in parts]
    return pieces


def ended_well(api: str, events: list[ServerSentEvent]) -> bool:
    """Whether the stream ends with ``api``'s own end mark."""
    last = events[-1]
    if api == "responses":
        return last.event == "response.completed"
    if api == "anthropic":
        return last.event == "message_stop"
    return bool(json.loads(last.data)["candidates"][0].get("finishReason"))


def reply(api: str, **fields: Any) -> dict[str, Any]:
    """A scripted reply for the next streamed request of ``api``'s provider."""
    return {"type": "reply", "match": {"provider": PROVIDERS[api], "stream": True}, **fields}


def upstream_path(mock: LLMock, api: str, path: str) -> str:
    return mock.base_url(api).removeprefix(mock.root).removesuffix("/v1") + path


# -- through llmock --------------------------------------------------------------------------------


def test_the_relay_streams_each_apis_events_from_its_upstream(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    marker = nonce()
    path, body, headers = native(api, f"say {marker}")
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    with httpx.stream("POST", root(relay) + path, json=body, headers=headers, timeout=WAIT) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for data in r.iter_raw():
            events += decoder.feed(data)
    events += decoder.flush()
    pieces = texts(api, events)
    assert len(pieces) > 1 and marker in "".join(pieces)  # llmock echoes the prompt
    assert ended_well(api, events)
    record = mock.record(marker)
    assert record["path"] == upstream_path(mock, api, path.partition("?")[0])
    assert (record["status"], record["stream"], record["completed"]) == (200, True, True)


def test_a_client_leaving_mid_stream_closes_the_upstream(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    mock.script(reply(api, text=LONG))
    marker = nonce()
    path, body, headers = native(api, f"go {marker}")
    before = len(relay.app.state.server.ended)
    decoder = SSEDecoder()
    with httpx.stream("POST", root(relay) + path, json=body, headers=headers, timeout=WAIT) as r:
        for data in r.iter_raw():
            if texts(api, decoder.feed(data)):
                break  # the first text: the client goes
    record = mock.record(marker)
    assert record["completed"] is False, record
    assert record["chunks_sent"] < len(LONG.split()), record
    [log] = ended_since(relay, before)
    assert log["end"] == "client disconnected"


def test_an_upstream_error_keeps_its_status_and_body(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    said = f"slow down {nonce()}"
    match = {"provider": PROVIDERS[api]}
    mock.script({"type": "fail", "status": 429, "retry_after": 7, "message": said, "match": match})
    path, body, headers = native(api, "hi")
    answer = httpx.post(root(relay) + path, json=body, headers=headers, timeout=WAIT)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert said in answer.text and answer.json()  # llmock's own error body, in its API's shape


def test_an_upstream_failing_mid_stream_ends_with_the_apis_error_event(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    match = {"provider": PROVIDERS[api], "stream": True}
    fault = {"type": "stream_fault", "kind": "disconnect", "after_chunks": FAULT_AFTER}
    mock.script(reply(api, text=LONG), {**fault, "match": match})
    path, body, headers = native(api, "hi")
    with httpx.stream("POST", root(relay) + path, json=body, headers=headers, timeout=WAIT) as r:
        events = SSEDecoder().feed(r.read())
    assert "".join(texts(api, events)).startswith("word0")  # what arrived is kept
    last = events[-1]
    error = json.loads(last.data)
    if api == "anthropic":
        assert (last.event, error["type"], error["error"]["type"]) == (
            "error",
            "error",
            "api_error",
        )
        said = error["error"]["message"]
    elif api == "responses":
        assert (last.event, error["type"]) == ("error", "error")
        said = error["message"]
    else:
        said = error["error"]["message"]
    assert "failed mid-answer" in said and RELAY_KEY not in said


def test_a_relay_stopping_mid_stream_ends_it_with_the_apis_error_event(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    mock.script(reply(api, text=LONG))
    marker = nonce()
    path, body, headers = native(api, f"go {marker}")
    decoder = SSEDecoder()
    with httpx.stream("POST", root(relay) + path, json=body, headers=headers, timeout=WAIT) as r:
        raw = r.iter_raw()
        for data in raw:
            if texts(api, decoder.feed(data)):
                break
        relay.stop()
        events = [event for data in raw for event in decoder.feed(data)] + decoder.flush()
    said = json.dumps(json.loads(events[-1].data))
    assert "the server ended this stream: server shutting down" in said
    assert events[-1].event == ("message" if api == "gemini" else "error")
    assert mock.record(marker)["completed"] is False  # the relay closed its upstream request


def test_the_official_sdks_stream_through_the_relay(
    mock: LLMock, api: str, relay: BackgroundServer
) -> None:
    marker = nonce()
    prompt = f"say {marker}"
    if api == "responses":
        with openai.OpenAI(base_url=relay.base_url, api_key=CLIENT_KEY, max_retries=0) as oai:
            events = oai.responses.create(model=MODELS[api], input=prompt, stream=True)
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    elif api == "anthropic":
        with (
            anthropic.Anthropic(base_url=root(relay), api_key=CLIENT_KEY, max_retries=0) as claude,
            claude.messages.stream(
                model=MODELS[api],
                max_tokens=1024,
                messages=[{"role": "user", "content": prompt}],
            ) as stream,
        ):
            text = "".join(stream.text_stream)
    else:
        options = genai_types.HttpOptions(base_url=root(relay), api_version="v1beta")
        with genai.Client(api_key=CLIENT_KEY, http_options=options) as gemini:
            pieces = gemini.models.generate_content_stream(model=MODELS[api], contents=prompt)
            text = "".join(piece.text or "" for piece in pieces)
    assert marker in text
    assert mock.record(marker)["completed"] is True


def test_a_model_list_comes_from_the_upstream(mock: LLMock, make_server: MakeServer) -> None:
    relay = make_server(upstream=mock.base_url("gemini"), upstream_api_key=RELAY_KEY)
    answer = httpx.get(f"{root(relay)}/v1beta/models", timeout=WAIT)
    assert answer.status_code == 200
    names = [model["name"] for model in answer.json()["models"]]
    assert f"models/{MODELS['gemini']}" in names


# -- what the relay sends: the scripted server as the upstream ------------------------------------

OLLAMA_LINES = [
    {"model": "llama3.2", "message": {"role": "assistant", "content": "one"}, "done": False},
    {"model": "llama3.2", "message": {"role": "assistant", "content": " two"}, "done": False},
]


def ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    ("api", "mount", "expected"),
    [
        ("responses", "/v1", {"authorization": f"Bearer {RELAY_KEY}"}),
        ("anthropic", "/anthropic",
         {"x-api-key": RELAY_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "b-1"}),
        ("gemini", "", {"x-goog-api-key": RELAY_KEY}),
        ("ollama", "", {"authorization": f"Bearer {RELAY_KEY}"}),
    ],
)  # fmt: skip
def test_the_upstream_gets_the_relays_key_in_its_apis_header_never_the_clients(
    server: ScriptedServer,
    make_server: MakeServer,
    api: str,
    mount: str,
    expected: dict[str, str],
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, '{"ok": true}')

    server.handler = handler
    upstream = server.url.removesuffix("/v1") + mount
    relay = make_server(upstream=upstream, upstream_api_key=RELAY_KEY)
    if api == "ollama":
        path, body = "/api/chat", {"model": "llama3.2", "messages": [], "stream": False}
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    else:
        path, body, headers = native(api, "hi")
    headers |= {"anthropic-beta": "b-1"} if api == "anthropic" else {}
    answer = httpx.post(root(relay) + path, json=body, headers=headers, timeout=WAIT)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    [seen] = server.requests
    # The upstream's root (its base URL without /v1) plus the path, without the client's key=.
    assert seen.path == mount.removesuffix("/v1") + path.replace(f"&key={CLIENT_KEY}", "")
    assert {name: seen.headers.get(name) for name in expected} == expected
    assert CLIENT_KEY not in json.dumps(seen.headers)
    if api in ("anthropic", "gemini"):  # the key goes in the API's own header alone
        assert "authorization" not in {name.lower() for name in seen.headers}
    assert json.loads(seen.body) == body


def test_an_anthropic_upstream_gets_a_version_when_the_client_sends_none(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, '{"ok": true}')

    server.handler = handler
    relay = make_server(upstream=server.url.removesuffix("/v1"), upstream_api_key=RELAY_KEY)
    body = {"model": "demo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{root(relay)}/v1/messages", json=body, timeout=WAIT)
    assert answer.status_code == 200
    [seen] = server.requests
    assert seen.headers.get("anthropic-version") == "2023-06-01"
    assert seen.headers.get("x-api-key") == RELAY_KEY


def test_an_ollama_stream_is_relayed_line_by_line_and_a_client_leaving_closes_it(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.start(content_type="application/x-ndjson")
        for line in OLLAMA_LINES:
            await response.send(ndjson(line))
        await response.until_disconnect()

    server.handler = handler
    relay = make_server(upstream=server.url.removesuffix("/v1"))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{root(relay)}/api/chat", json=body, timeout=WAIT) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = r.iter_lines()
        assert [json.loads(next(lines)) for _ in OLLAMA_LINES] == OLLAMA_LINES
    request = server.requests[-1]
    assert request.disconnected.wait(WAIT), "the upstream never saw the relay go"
    assert request.path == "/api/chat" and not request.finished


def test_an_ollama_upstream_failing_mid_line_ends_with_an_error_line(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.start(content_type="application/x-ndjson")
        await response.send(ndjson(OLLAMA_LINES[0]) + b'{"model": "llama3.2", "mess')
        response.abort()

    server.handler = handler
    relay = make_server(upstream=server.url.removesuffix("/v1"), upstream_api_key=RELAY_KEY)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{root(relay)}/api/chat", json=body, timeout=WAIT) as r:
        lines = [json.loads(line) for line in r.iter_lines()]
    assert lines[0] == OLLAMA_LINES[0]  # the half line was held back, never half-delivered
    [error] = lines[1:]
    assert "failed mid-answer" in error["error"] and RELAY_KEY not in error["error"]


def test_a_gemini_json_array_stream_is_passed_on_as_it_arrives(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    first = {"candidates": [{"content": {"parts": [{"text": "one"}], "role": "model"}}]}

    async def handler(request: Request, response: Response) -> None:
        await response.start(content_type="application/json; charset=UTF-8")
        await response.send(b"[" + json.dumps(first).encode() + b"\n")
        await response.send(b',\r\n{"candidates": [{"content": {"par')  # half an element
        await response.until_disconnect()  # the rest never comes: it must not be waited for

    server.handler = handler
    relay = make_server(upstream=server.url.removesuffix("/v1"), upstream_api_key=RELAY_KEY)
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.stream("POST", root(relay) + path, json=body, timeout=WAIT) as r:
        assert r.headers["content-type"].startswith("application/json")
        got = b""
        for data in r.iter_raw():
            got += data
            if got.endswith(b"\n"):
                break
        assert got == b"[" + json.dumps(first).encode() + b"\n"  # whole lines, the first now
    request = server.requests[-1]
    assert request.disconnected.wait(WAIT), "the upstream never saw the relay go"
    assert request.headers["x-goog-api-key"] == RELAY_KEY


def test_an_ollama_list_and_an_unreachable_upstream(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    tags = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}

    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, json.dumps(tags))

    server.handler = handler
    relay = make_server(upstream=server.url.removesuffix("/v1"))
    assert httpx.get(f"{root(relay)}/api/tags", timeout=WAIT).json() == tags
    assert server.requests[-1].method == "GET" and server.requests[-1].path == "/api/tags"
    gone = make_server(upstream="http://127.0.0.1:1")
    answer = httpx.post(f"{root(gone)}/api/chat", json={"model": "m"}, timeout=WAIT)
    assert answer.status_code == 502  # in Ollama's shape: the error a string
    assert "could not reach the upstream 127.0.0.1:1" in answer.json()["error"]
    path, body, headers = native("anthropic", "hi")
    answer = httpx.post(root(gone) + path, json=body, headers=headers, timeout=WAIT)
    assert answer.status_code == 502 and answer.json()["type"] == "error"  # Anthropic's shape
    assert "could not reach the upstream" in answer.json()["error"]["message"]


# -- where a request goes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "path", "query", "url"),
    [
        ("https://api.openai.com/v1", "/v1/responses", "",
         "https://api.openai.com/v1/responses"),
        ("http://h:9/anthropic", "/v1/messages", "", "http://h:9/anthropic/v1/messages"),
        ("https://api.anthropic.com", "/v1/models", "limit=5",
         "https://api.anthropic.com/v1/models?limit=5"),
        ("https://generativelanguage.googleapis.com/v1beta", "/v1beta/models/g:generateContent",
         "key=CLIENT&alt=sse", "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?alt=sse"),
        ("http://h:9/gemini?tenant=a", "/v1beta/models", "key=x", "http://h:9/gemini/v1beta/models?tenant=a"),
        ("http://localhost:11434/v1", "/api/chat", "", "http://localhost:11434/api/chat"),
    ],
)  # fmt: skip
def test_a_native_request_goes_to_the_upstreams_root_plus_its_path(
    upstream: str, path: str, query: str, url: str
) -> None:
    assert Relay(ServerConfig(upstream=upstream)).native_url(path, query) == url


# -- Ollama: a second embedded server (demo mode) as the upstream ----------------------------------


def test_the_ollama_sdk_streams_the_demo_upstreams_answer_through_the_relay(
    demo_server: BackgroundServer, make_server: MakeServer
) -> None:
    relay = make_server(upstream=demo_server.base_url)  # …/v1: the relay takes it off
    messages = [{"role": "user", "content": "What is NDJSON?"}]
    with ollama.Client(host=root(relay)) as client:
        parts = list(client.chat(model="demo", messages=messages, stream=True))
    assert len(parts) > 1 and parts[-1].done
    assert "".join(part.message.content or "" for part in parts) == demo_answer("What is NDJSON?")


def test_a_client_leaving_an_ollama_stream_closes_the_demo_upstream(
    make_server: MakeServer,
) -> None:
    upstream = make_server(tokens_per_second=20, first_token_delay=0)
    relay = make_server(upstream=upstream.base_url)
    before = len(upstream.app.state.server.ended)
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{root(relay)}/api/chat", json=body, timeout=WAIT) as r:
        first = json.loads(next(r.iter_lines()))
    assert first["message"]["content"] and first["done"] is False
    [log] = ended_since(upstream, before)
    assert log["end"] == "client disconnected"
    assert log["tokens"] < len(tokenize(demo_answer("hi")))
