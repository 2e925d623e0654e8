"""Where a stream goes: call options, then the environment."""

from __future__ import annotations

import pytest

from jupyter_stream import ConfigurationError, astream_chat, stream_chat
from jupyter_stream._config import resolve_endpoint, resolve_model


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
    assert endpoint.chat_url == "http://localhost:8000/v1/chat/completions"


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
        endpoint.chat_url
        == "https://user:pw@x.example/openai/v1/chat/completions?api-version=2024-10"
    )
    assert "pw" not in repr(endpoint) and "api-version" not in repr(endpoint)


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
