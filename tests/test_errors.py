"""Every bad answer gets an error that names the cause and the fix, keeps what arrived, and never
shows the API key."""

from __future__ import annotations

import json
import socket
import traceback

import pytest
from scripted_server import Request, Response, ScriptedServer, chunk, complete

from jupyter_stream import (
    APIError,
    AuthenticationError,
    ConnectError,
    HTTPStatusError,
    JupyterStreamError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StopReason,
    astream_chat,
)

SECRET = "sk-test-0123456789abcdefSECRET"


def answers(status: int, body: str, content_type: str = "application/json", **headers: str):
    async def handler(request: Request, response: Response) -> None:
        await response.whole(status, body, content_type, headers)

    return handler


def openai_error(
    message: str, type_: str = "invalid_request_error", code: str | None = None
) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "code": code}})


async def fails(server: ScriptedServer, **options) -> JupyterStreamError:
    options.setdefault("max_retries", 0)
    stream = astream_chat("hi", model="gpt-test", base_url=server.url, **options)
    with pytest.raises(JupyterStreamError) as caught:
        async for _ in stream:
            pass
    assert stream.stop_reason is StopReason.ERROR
    assert stream.error is caught.value
    assert caught.value.reply is stream.reply
    return caught.value


def all_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error)


async def test_401_names_the_key_variable_and_url_never_the_key(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.handler = answers(401, openai_error(f"Incorrect API key provided: {SECRET}"))
    error = await fails(server)
    assert isinstance(error, AuthenticationError) and error.status_code == 401
    assert "OPENAI_API_KEY" in str(error)
    assert server.url in str(error)
    assert SECRET not in all_text(error)
    assert SECRET not in error.body
    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_401_without_a_key_says_none_was_configured(server: ScriptedServer) -> None:
    server.handler = answers(401, openai_error("You didn't provide an API key."))
    error = await fails(server)
    assert "no API key" in str(error) and "OPENAI_API_KEY" in str(error)
    assert "authorization" not in server.requests[-1].headers


async def test_the_key_is_not_in_reprs(server: ScriptedServer) -> None:
    stream = astream_chat("hi", model="m", base_url=server.url, api_key=SECRET)
    assert SECRET not in repr(stream)
    assert SECRET not in repr(stream._engine._request)
    await stream.aclose()


async def test_404_for_a_model_names_the_model(server: ScriptedServer) -> None:
    server.handler = answers(
        404, openai_error("The model `gpt-test` does not exist", code="model_not_found")
    )
    error = await fails(server)
    assert isinstance(error, NotFoundError)
    assert "'gpt-test' not found" in str(error) and "%chat models" in str(error)


async def test_404_for_a_wrong_path_suggests_the_base_url(server: ScriptedServer) -> None:
    server.handler = answers(404, "Not Found", "text/plain")
    error = await fails(server)
    assert isinstance(error, NotFoundError)
    assert "/v1" in str(error) and "base URL" in str(error)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_names_its_target_and_the_base_url_to_set(
    server: ScriptedServer, status: int
) -> None:
    target = "https://user:hunter2@api.example/v1/chat/completions?key=abc"
    server.handler = answers(status, "", "text/plain", Location=target)
    error = await fails(server)
    assert isinstance(error, HTTPStatusError) and error.status_code == status
    said = str(error)
    assert "redirects to https://api.example/v1/chat/completions" in said
    assert "set the base URL to https://api.example/v1 " in said
    assert "hunter2" not in said and "key=abc" not in said  # credentials never shown


async def test_a_relative_redirect_is_resolved(server: ScriptedServer) -> None:
    server.handler = answers(307, "", "text/plain", Location="/api/v1/chat/completions")
    error = await fails(server)
    assert f"redirects to {server.url.removesuffix('/v1')}/api/v1/chat/completions" in str(error)


async def test_429_shows_retry_after(server: ScriptedServer) -> None:
    server.handler = answers(429, openai_error("Rate limit reached"), **{"Retry-After": "7"})
    error = await fails(server)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7
    assert "retry after 7 s" in str(error) and "Rate limit reached" in str(error)


async def test_429_is_retried_honouring_retry_after(server: ScriptedServer) -> None:
    async def limited_once(request: Request, response: Response) -> None:
        if len(server.requests) == 1:
            await response.whole(429, openai_error("slow down"), headers={"Retry-After": "0"})
        else:
            await complete(response, ["ok"])

    server.handler = limited_once
    stream = astream_chat("hi", model="m", base_url=server.url, max_retries=2)
    assert [delta async for delta in stream] == ["ok"]
    assert len(server.requests) == 2


async def test_500_is_retried_a_bounded_number_of_times(server: ScriptedServer) -> None:
    server.handler = answers(500, openai_error("boom"), **{"Retry-After": "0"})
    error = await fails(server, max_retries=2)
    assert isinstance(error, ServerError) and error.status_code == 500
    assert len(server.requests) == 3


async def test_an_html_502_page_is_summarised(server: ScriptedServer) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    server.handler = answers(502, page, "text/html")
    error = await fails(server)
    assert isinstance(error, ServerError)
    assert "HTML page: 502 Bad Gateway" in str(error)
    assert "<html>" not in str(error)


async def test_an_html_page_with_status_200_is_not_an_event_stream(server: ScriptedServer) -> None:
    server.handler = answers(200, "<html><title>Login</title>Please sign in</html>", "text/html")
    error = await fails(server)
    assert isinstance(error, ProtocolError)
    assert "expected an event stream" in str(error) and "text/html" in str(error)
    assert "Login" in str(error)


async def test_a_non_streamed_completion_is_accepted(server: ScriptedServer) -> None:
    body = {"choices": [{"index": 0, "message": {"content": "whole"}, "finish_reason": "stop"}]}
    server.handler = answers(200, json.dumps(body))
    stream = astream_chat("hi", model="m", base_url=server.url)
    assert [delta async for delta in stream] == ["whole"]
    assert stream.stop_reason is StopReason.COMPLETED


async def test_a_non_streamed_completion_with_a_bad_value_names_the_field(
    server: ScriptedServer,
) -> None:
    body = {"choices": [{"index": 0, "message": {"content": 123}, "finish_reason": "stop"}]}
    server.handler = answers(200, json.dumps(body))
    error = await fails(server)
    assert isinstance(error, ProtocolError) and error.field == "choices[0].message.content"
    assert "as a number (123)" in str(error)


async def test_a_mid_stream_error_event_keeps_the_partial_answer(server: ScriptedServer) -> None:
    async def overloaded(request: Request, response: Response) -> None:
        await response.event(chunk("half"))
        await response.event({"error": {"message": "Model overloaded", "type": "server_error"}})
        await response.end()

    server.handler = overloaded
    error = await fails(server)
    assert isinstance(error, APIError)
    assert "Model overloaded" in str(error) and error.type == "server_error"
    assert error.reply is not None and error.reply.content == "half"


async def test_malformed_json_names_an_excerpt(server: ScriptedServer) -> None:
    async def garbage(request: Request, response: Response) -> None:
        await response.event(chunk("ok"))
        await response.send("data: {not json at all\n\n")
        await response.end()

    server.handler = garbage
    error = await fails(server)
    assert isinstance(error, ProtocolError)
    assert "{not json at all" in str(error)
    assert error.reply is not None and error.reply.content == "ok"


async def test_a_plain_text_body_is_not_an_event_stream(server: ScriptedServer) -> None:
    async def text(request: Request, response: Response) -> None:
        await response.start(content_type="text/plain")
        await response.send("hello there")
        await response.end()

    server.handler = text
    error = await fails(server)
    assert isinstance(error, ProtocolError) and "hello there" in str(error)


async def test_refused_connection_names_host_and_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = astream_chat("hi", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(ConnectError) as caught:
        async for _ in stream:
            pass
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message
    assert "start the server" in message
    assert caught.value.__cause__ is not None


async def test_stream_options_rejected_is_retried_without_it(server: ScriptedServer) -> None:
    async def old_server(request: Request, response: Response) -> None:
        if "stream_options" in request.json():
            await response.whole(400, openai_error("Unrecognized request argument: stream_options"))
        else:
            await complete(response, ["fine"], usage=False)

    server.handler = old_server
    stream = astream_chat("hi", model="m", base_url=server.url, max_retries=0)
    assert [delta async for delta in stream] == ["fine"]
    assert [("stream_options" in r.json()) for r in server.requests] == [True, False]


def test_errors_are_one_family() -> None:
    import jupyter_stream

    for name in jupyter_stream.__all__:
        obj = getattr(jupyter_stream, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, JupyterStreamError), name
            assert obj.__doc__, name
