"""Where a stream goes: call options, then the environment."""

from __future__ import annotations

import base64
import json
import traceback
from typing import Any
from urllib.parse import quote

import pytest
from scripted_server import ScriptedServer

from jupyter_stream import ConfigurationError, astream_chat, stream_chat
from jupyter_stream._config import resolve_model
from jupyter_stream._endpoint import resolve_endpoint
from jupyter_stream._wire import chat


def test_call_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", "http://env.example/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    endpoint = resolve_endpoint("http://call.example/v1/", "sk-call")
    assert endpoint.base_url == "http://call.example/v1"
    assert endpoint.api_key == "sk-call" and endpoint.api_key_source == "api_key argument"


def test_environment_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.example/v1")
    assert resolve_endpoint().base_url == "http://openai.example/v1"
    assert resolve_endpoint().base_url_source == "OPENAI_BASE_URL"
    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", "http://ours.example/v1")
    assert resolve_endpoint().base_url_source == "JUPYTER_STREAM_BASE_URL"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert resolve_endpoint().api_key_source == "OPENAI_API_KEY"
    monkeypatch.setenv("JUPYTER_STREAM_MODEL", "llama3.2")
    assert resolve_model(None) == "llama3.2"
    assert resolve_model("gpt-4o-mini") == "gpt-4o-mini"


def test_a_full_chat_completions_url_is_accepted() -> None:
    endpoint = resolve_endpoint("http://localhost:8000/v1/chat/completions")
    assert endpoint.url(chat.PATH) == "http://localhost:8000/v1/chat/completions"


@pytest.mark.parametrize(
    ("url", "hint"),
    [("localhost:11434/v1", "http://localhost:11434/v1"), ("ftp://x/v1", "http://"), ("", "")],
)
def test_a_bad_base_url_says_what_to_write(url: str, hint: str) -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://") as caught:
        resolve_endpoint(url)
    assert hint in str(caught.value)


def test_a_key_alone_means_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    endpoint = resolve_endpoint()
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert "OPENAI_API_KEY" in endpoint.base_url_source
    with pytest.raises(ConfigurationError, match="JUPYTER_STREAM_MODEL"):
        resolve_model(None, endpoint)  # no default model on somebody else's server


def test_no_model_says_how_to_pick_one() -> None:
    with pytest.raises(ConfigurationError, match="JUPYTER_STREAM_MODEL"):
        astream_chat("hi", base_url="http://localhost:1/v1")


def test_user_info_never_shows_in_the_display_url() -> None:
    endpoint = resolve_endpoint("https://user:hunter2@proxy.example/v1?key=abc")
    assert "hunter2" not in endpoint.display_url and "abc" not in endpoint.display_url
    assert endpoint.host_port == "proxy.example:443"


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"idle_timeout": -1},
        {"connect_timeout": 0},
        {"max_retries": -1},
        {"stream": False},
        {"n": 2},
    ],
)
def test_bad_options_are_configuration_errors(options: dict) -> None:
    with pytest.raises(ConfigurationError):
        astream_chat("hi", model="m", base_url="http://localhost:1/v1", **options)


def test_messages_need_a_role() -> None:
    with pytest.raises(ConfigurationError, match="role"):
        astream_chat([{"content": "hi"}], model="m", base_url="http://localhost:1/v1")
    with pytest.raises(ConfigurationError, match="no messages"):
        astream_chat([], model="m", base_url="http://localhost:1/v1")


async def test_sync_and_async_iteration_are_not_mixed() -> None:
    sync = stream_chat("hi", model="m", base_url="http://localhost:1/v1")
    with pytest.raises(TypeError, match="`for`"):
        await sync.__anext__()
    sync.close()
    asynchronous = astream_chat("hi", model="m", base_url="http://localhost:1/v1")
    with pytest.raises(TypeError, match="async for"):
        next(asynchronous)
    asynchronous.close()


def test_a_query_string_stays_at_the_end_and_out_of_reprs() -> None:
    endpoint = resolve_endpoint("https://user:pw@x.example/openai/v1?api-version=2024-10")
    assert (
        endpoint.url(chat.PATH)
        == "https://x.example/openai/v1/chat/completions?api-version=2024-10"
    )
    assert "pw" not in repr(endpoint) and "api-version" not in repr(endpoint)


def test_user_info_is_sent_as_basic_auth_unless_a_key_is_set() -> None:
    endpoint = resolve_endpoint("https://us%40er:p%2Fw@x.example/v1")
    assert "@" not in endpoint.base_url and "p%2Fw" not in endpoint.url(chat.PATH)
    expected = "Basic " + base64.b64encode(b"us@er:p/w").decode()
    assert chat.headers(endpoint)["Authorization"] == expected
    assert endpoint.credentials_source == "the user info in the base URL (base_url argument)"
    keyed = resolve_endpoint("https://user:pw@x.example/v1", "sk-key")
    assert chat.headers(keyed)["Authorization"] == "Bearer sk-key"
    assert keyed.credentials_source == "api_key argument"


CANARY = "sk-canary/+=0123456789"
BASIC = base64.b64encode(b"user:" + CANARY.encode()).decode()  # sent for user:CANARY@


@pytest.mark.parametrize(
    "echo",
    [
        CANARY,
        json.dumps(CANARY)[1:-1].replace("s", "\\u0073").replace("/", "\\/"),
        quote(CANARY, safe=""),
        quote(CANARY, safe="").lower(),
        "".join(f"&#{ord(c)};" for c in CANARY),
        BASIC,
    ],
    ids=["raw", "json-escaped", "url-encoded", "url-encoded-lower", "html", "basic"],
)
def test_secrets_are_redacted_in_every_form_a_server_may_echo(echo: str) -> None:
    for endpoint in (
        resolve_endpoint("http://x.example/v1", CANARY),
        resolve_endpoint(f"http://user:{quote(CANARY, safe='')}@x.example/v1"),
        resolve_endpoint(f"http://x.example/v1?api-version=1&key={quote(CANARY, safe='')}"),
    ):
        if echo == BASIC and endpoint.url_credentials is None:
            continue
        said = f"header: {echo}; again: {echo}."
        assert endpoint.redact(said) == "header: ***; again: ***."
        assert endpoint.redact_bytes(said.encode()) == b"header: ***; again: ***."


def test_a_short_key_is_redacted_only_as_a_token_of_its_own() -> None:
    endpoint = resolve_endpoint("http://x.example/v1", "x")
    assert endpoint.redact("max x-ray xx: Bearer x.") == "max x-ray xx: Bearer ***."


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("canary-user:pw-canary-123@x.example:99999/v1", "did you mean 'http://***@x.example"),
        ("http://canary-user:pw-canary-123@x.example:99999/v1", "invalid port"),
        ("http://x.example:pw-canary-123/v1", "invalid port"),
        ("http://[::1/v1?key=pw-canary-123", "not a valid URL"),
        ("ftp://x.example/v1?key=pw-canary-123&api-version=2", "'ftp://x.example/v1?key=***&"),
    ],
)
def test_a_bad_base_url_is_quoted_without_its_credentials(url: str, said: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_endpoint(url)
    text = "".join(traceback.format_exception(caught.value))
    assert said in text
    assert "pw-canary" not in text and "canary-user" not in text


def test_a_key_pasted_with_a_newline_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc123\n")
    assert resolve_endpoint("http://localhost:1/v1").api_key == "sk-abc123"


@pytest.mark.parametrize("key", ["sk-abc\r123", "sk abc", "sk-\x00abc", "  "])
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key argument") as caught:
        resolve_endpoint("http://localhost:1/v1", key)
    assert key.strip() not in str(caught.value) or not key.strip()


async def test_async_with_on_a_sync_stream_is_refused() -> None:
    sync = stream_chat("hi", model="m", base_url="http://localhost:1/v1")
    with pytest.raises(TypeError, match="`with` with stream_chat"):
        async with sync:
            pass
    sync.close()


# -- Colab's built-in model proxy (not reachable here: its variables point at our own servers) ----

COLAB_KEY = "colab-proxy-key-123"


def test_colab_proxy_host_gives_its_openapi_root_its_key_and_colabs_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_PROXY_HOST", "https://proxy.colab.example/")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    endpoint = resolve_endpoint()
    assert endpoint.base_url == "https://proxy.colab.example/models/openapi"
    assert endpoint.base_url_source == "Colab's model proxy, from MODEL_PROXY_HOST"
    assert endpoint.api_key == COLAB_KEY and endpoint.api_key_source == "MODEL_PROXY_API_KEY"
    assert resolve_model(None, endpoint) == "google/gemini-2.5-flash"
    monkeypatch.setenv("JUPYTER_STREAM_MODEL", "google/gemini-2.0-flash")
    assert resolve_model(None, endpoint) == "google/gemini-2.0-flash"
    assert COLAB_KEY not in repr(endpoint)


def test_colab_proxy_base_url_is_used_as_it_is_when_there_is_no_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_PROXY_BASE_URL", "https://mp.example/v1/")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    endpoint = resolve_endpoint()
    assert endpoint.base_url == "https://mp.example/v1"
    assert endpoint.base_url_source == "Colab's model proxy, from MODEL_PROXY_BASE_URL"
    monkeypatch.setenv("MODEL_PROXY_HOST", "https://host.example")  # what google.colab.ai uses
    assert resolve_endpoint().base_url == "https://host.example/models/openapi"


@pytest.mark.parametrize(
    "explicit",
    [
        {"base_url": "http://call.example/v1"},
        {"api_key": "sk-call"},
        {"env": ("JUPYTER_STREAM_BASE_URL", "http://env.example/v1")},
        {"env": ("OPENAI_BASE_URL", "http://openai.example/v1")},
        {"env": ("OPENAI_API_KEY", "sk-env")},
    ],
)
def test_anything_configured_wins_over_colabs_proxy_and_never_gets_its_key(
    monkeypatch: pytest.MonkeyPatch, explicit: dict
) -> None:
    monkeypatch.setenv("MODEL_PROXY_HOST", "https://proxy.colab.example")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    if "env" in explicit:
        monkeypatch.setenv(*explicit.pop("env"))
    endpoint = resolve_endpoint(**explicit)
    assert "colab" not in endpoint.display_url and "Colab" not in endpoint.base_url_source
    assert endpoint.api_key != COLAB_KEY
    assert COLAB_KEY not in str(chat.headers(endpoint))


def test_colab_proxy_without_its_key_leaves_the_embedded_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jupyter_stream.server import embedded_base_url

    monkeypatch.setenv("MODEL_PROXY_HOST", "https://proxy.colab.example")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", "")
    endpoint = resolve_endpoint()
    assert endpoint.base_url_source == "the embedded demo server"
    assert endpoint.base_url == embedded_base_url()
    assert resolve_model(None, endpoint) == "demo"


async def test_a_reply_streams_from_colabs_proxy_pointed_at_our_server(
    monkeypatch: pytest.MonkeyPatch, make_server: Any
) -> None:
    """The proxy's variables at our demo server (which wants the key): the key is sent as a
    Bearer token and the reply streams."""
    ours = make_server(tokens_per_second=0, first_token_delay=0, api_key=COLAB_KEY)
    monkeypatch.setenv("MODEL_PROXY_BASE_URL", ours.base_url)
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    stream = astream_chat("Hello", model="demo", max_tokens=12)
    text = "".join([delta async for delta in stream])
    assert stream.error is None and text and stream.stats.tokens == 12


async def test_colabs_proxy_host_requests_go_to_its_openapi_path_with_its_key(
    monkeypatch: pytest.MonkeyPatch, server: ScriptedServer
) -> None:
    monkeypatch.setenv("MODEL_PROXY_HOST", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    stream = astream_chat("Hello")
    assert "".join([delta async for delta in stream]) == "Hello, world!"
    [request] = server.requests
    assert request.path == "/models/openapi/chat/completions"
    assert request.headers["authorization"] == f"Bearer {COLAB_KEY}"
    assert request.json()["model"] == "google/gemini-2.5-flash"


def test_chat_config_says_colabs_proxy_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_stream._magic import ChatMagics

    monkeypatch.setenv("MODEL_PROXY_HOST", "https://proxy.colab.example")
    monkeypatch.setenv("MODEL_PROXY_API_KEY", COLAB_KEY)
    said = ChatMagics()._config()
    assert (
        "base URL     https://proxy.colab.example/models/openapi — Colab's model proxy, "
        "from MODEL_PROXY_HOST"
    ) in said
    assert "model        google/gemini-2.5-flash" in said
    assert "API key      set (MODEL_PROXY_API_KEY)" in said
    assert COLAB_KEY not in said
    monkeypatch.delenv("MODEL_PROXY_API_KEY")
    said = ChatMagics()._config()
    assert "— the embedded demo server" in said
    assert "Colab's model proxy is not used: MODEL_PROXY_API_KEY is not set" in said
    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", "http://localhost:8000/v1")
    said = ChatMagics()._config()
    assert "— JUPYTER_STREAM_BASE_URL" in said and "Colab" not in said
    assert "model        not set: no model given" in said and "JUPYTER_STREAM_MODEL" in said
