"""Relay mode: our server in front of a real upstream on loopback (the scripted server)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
from collections.abc import Callable
from urllib.parse import quote

import httpx
import openai
import pytest
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream import (
    APIError,
    AuthenticationError,
    ServerError,
    StopReason,
    astream_chat,
    list_models,
    stream_chat,
)
from jupyter_stream.server import BackgroundServer

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
MakeServer = Callable[..., BackgroundServer]


@pytest.fixture
def relay(server: ScriptedServer, make_server: MakeServer) -> BackgroundServer:
    return make_server(upstream=server.url, upstream_api_key="sk-upstream")


def sees_disconnect(server: ScriptedServer) -> None:
    request = server.requests[-1]
    assert request.disconnected.wait(WAIT), "the upstream never saw the relay go"
    assert not request.finished


def test_the_relay_streams_the_upstreams_answer_with_its_key(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    stream = stream_chat("hi", model="test-model", base_url=relay.base_url, api_key="client-key")
    assert "".join(stream) == "Hello, world!"
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.reply.usage is not None
    upstream = server.requests[-1]
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == "Bearer sk-upstream"  # never the client's key
    assert upstream.json()["messages"] == [{"role": "user", "content": "hi"}]
    assert upstream.json()["stream"] is True


async def test_a_client_that_goes_mid_answer_closes_the_upstream(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.event(chunk("one"))
        await response.event(chunk(" two"))
        await response.until_disconnect()

    server.handler = handler
    stream = astream_chat("hi", model="m", base_url=relay.base_url, max_retries=0)
    assert [await stream.__anext__(), await stream.__anext__()] == ["one", " two"]
    stream.close()
    sees_disconnect(server)


def test_a_client_that_goes_before_the_first_byte_closes_the_upstream(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    asked = threading.Event()

    async def handler(request: Request, response: Response) -> None:
        asked.set()
        await response.until_disconnect()  # a model that thinks for ever

    server.handler = handler
    stream = stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0)
    runner = threading.Thread(target=lambda: list(stream), daemon=True)
    runner.start()
    assert asked.wait(WAIT)
    stream.close()
    sees_disconnect(server)
    runner.join(WAIT)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "said"),
    [
        (401, '{"error": {"message": "Incorrect API key provided"}}', "application/json",
         AuthenticationError, "Incorrect API key provided"),
        (502, "<html><title>Bad Gateway</title></html>", "text/html",
         ServerError, "the upstream answered 502: <html><title>Bad Gateway"),
    ],
)  # fmt: skip
def test_an_upstream_error_before_the_answer_keeps_its_status_and_says_why(
    server: ScriptedServer,
    relay: BackgroundServer,
    status: int,
    body: str,
    content_type: str,
    error: type[Exception],
    said: str,
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.whole(status, body, content_type)

    server.handler = handler
    with pytest.raises(error, match=re.escape(said)):
        list(stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0))


def test_an_upstream_failing_mid_answer_becomes_an_error_event(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.event(chunk("kept"))
        await response.send(b'data: {"choices": [{"delta": {"content": "half')  # no end
        response.abort()

    server.handler = handler
    stream = stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0)
    with pytest.raises(APIError, match="failed mid-answer") as caught:
        list(stream)
    assert stream.text == "kept"  # the half event was held back, never half-delivered
    assert caught.value.reply is not None and caught.value.reply.content == "kept"


def test_an_unreachable_upstream_is_a_502_that_names_it(make_server: MakeServer) -> None:
    relay = make_server(upstream="http://127.0.0.1:1/v1")
    with pytest.raises(ServerError, match=r"could not reach the upstream 127\.0\.0\.1:1"):
        list(stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0))


def test_the_model_list_comes_from_the_upstream(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        assert request.path == "/v1/models"
        body = {"object": "list", "data": [{"id": "llama3.2"}, {"id": "gpt-4o-mini"}]}
        await response.whole(200, json.dumps(body))

    server.handler = handler
    assert list_models(base_url=relay.base_url) == ["gpt-4o-mini", "llama3.2"]


def test_a_whole_answer_passes_through(server: ScriptedServer, relay: BackgroundServer) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}}],
    }

    async def handler(request: Request, response: Response) -> None:
        assert request.json()["stream"] is False
        await response.whole(200, json.dumps(completion))

    server.handler = handler
    with openai.OpenAI(base_url=relay.base_url, api_key="unused", max_retries=0) as client:
        answer = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=False
        )
    assert answer.choices[0].message.content == "whole"


def test_the_upstreams_key_never_comes_back_through_the_relay(
    server: ScriptedServer, relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        echoed = f"<html>bad header: {request.headers['authorization']}</html>"
        await response.whole(401, echoed, "text/html")

    server.handler = handler
    with pytest.raises(AuthenticationError) as caught:
        list(stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0))
    assert "sk-upstream" not in str(caught.value) and "Bearer ***" in str(caught.value)
    with pytest.raises(AuthenticationError) as caught:
        list_models(base_url=relay.base_url)
    assert "sk-upstream" not in str(caught.value)


UPSTREAM_KEY = "sk-upstream-canary-0123456789"
ESCAPED = UPSTREAM_KEY.replace("s", "\\u0073").replace("-", "\\u002d")  # as JSON may send it


@pytest.fixture
def keyed_relay(server: ScriptedServer, make_server: MakeServer) -> BackgroundServer:
    return make_server(upstream=server.url, upstream_api_key=UPSTREAM_KEY)


def leaks(text: str) -> bool:
    return UPSTREAM_KEY in text or quote(UPSTREAM_KEY, safe="") in text


def test_a_key_echoed_in_a_mid_stream_error_event_is_redacted(
    server: ScriptedServer, keyed_relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.event(chunk("kept"))
        await response.send('data: {"error": {"message": "bad key ' + ESCAPED + '"}}\n\n')
        await response.end()

    server.handler = handler
    stream = stream_chat("hi", model="m", base_url=keyed_relay.base_url, max_retries=0)
    with pytest.raises(APIError, match=r"bad key \*\*\*") as caught:
        list(stream)
    assert stream.text == "kept" and not leaks(str(caught.value))


def test_a_key_echoed_in_a_whole_2xx_answer_is_redacted(
    server: ScriptedServer, keyed_relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        message = {"role": "assistant", "content": f"your header was Bearer {UPSTREAM_KEY} (@)"}
        body = json.dumps({"choices": [{"index": 0, "message": message}]})
        await response.whole(200, body.replace("@", ESCAPED))  # the key again, JSON-escaped

    server.handler = handler
    with httpx.Client() as client:
        answer = client.post(f"{keyed_relay.base_url}/chat/completions", json={"model": "m"})
    assert answer.status_code == 200 and not leaks(answer.text) and "\\u0073k" not in answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "your header was Bearer *** (***)"


def test_credentials_in_the_upstream_url_go_as_basic_auth_and_never_come_back(
    server: ScriptedServer, make_server: MakeServer
) -> None:
    upstream = server.url.replace("http://", f"http://relay:{quote(UPSTREAM_KEY)}@")
    relay = make_server(upstream=upstream + "?api-version=1&key=" + UPSTREAM_KEY)
    basic = "Basic " + base64.b64encode(f"relay:{UPSTREAM_KEY}".encode()).decode()

    async def handler(request: Request, response: Response) -> None:
        echoed = f"<html>{request.headers['authorization']} on {request.path}</html>"
        await response.whole(401, echoed, "text/html")

    server.handler = handler
    with pytest.raises(AuthenticationError) as caught:
        list(stream_chat("hi", model="m", base_url=relay.base_url, max_retries=0))
    assert server.requests[-1].headers["authorization"] == basic
    assert server.requests[-1].path.endswith(f"?api-version=1&key={UPSTREAM_KEY}")
    said = str(caught.value)
    assert "Basic ***" in said and not leaks(said) and basic.split()[1] not in said


def test_a_gzipped_answer_is_passed_on_decoded_and_redacted(
    server: ScriptedServer, keyed_relay: BackgroundServer
) -> None:
    async def handler(request: Request, response: Response) -> None:
        events = b"".join(
            b"data: " + json.dumps(chunk(text)).encode() + b"\n\n"
            for text in ("zipped ", UPSTREAM_KEY)
        )
        await response.start(headers={"Content-Encoding": "gzip"})
        await response.send(gzip.compress(events + b"data: [DONE]\n\n"))
        await response.end()

    server.handler = handler
    stream = stream_chat("hi", model="m", base_url=keyed_relay.base_url, max_retries=0)
    assert "".join(stream) == "zipped ***"
