"""Which API a stream speaks: the api= option, JUPYTER_STREAM_API, a well-known host, a lone
provider key, else Chat Completions; and the key that goes with it, never shown."""

from __future__ import annotations

import traceback

import pytest

from jupyter_stream import ChatSession, ConfigurationError
from jupyter_stream._config import configured_endpoint
from jupyter_stream._endpoint import resolve_endpoint
from jupyter_stream._wire import FORMATS

NATIVE = ("responses", "anthropic", "gemini", "ollama")
ANTHROPIC_KEY = "sk-ant-canary-4f1e9d"
GEMINI_KEY = "AIza-canary-77b2c0"
OPENAI_KEY = "sk-openai-canary-81a3"


def test_every_api_is_registered() -> None:
    assert set(FORMATS) == {"chat", *NATIVE}


def test_the_api_argument_wins_over_jupyter_stream_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_STREAM_API", "gemini")
    assert configured_endpoint().api == "gemini"
    assert configured_endpoint(api="anthropic").api == "anthropic"
    assert configured_endpoint(api="chat").api == "chat"


def test_jupyter_stream_api_wins_over_the_host_and_the_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("JUPYTER_STREAM_API", "ollama")
    assert configured_endpoint().api == "ollama"
    assert configured_endpoint("https://api.anthropic.com").api == "ollama"


@pytest.mark.parametrize(
    ("base_url", "api"),
    [
        ("https://api.anthropic.com", "anthropic"),
        ("https://API.Anthropic.com/", "anthropic"),
        ("https://generativelanguage.googleapis.com", "gemini"),
        ("https://api.openai.com/v1", "chat"),
        ("http://localhost:8000/v1", "chat"),  # any other host: Chat Completions, as before
    ],
)
def test_a_well_known_host_picks_its_api(base_url: str, api: str) -> None:
    assert configured_endpoint(base_url).api == api


def test_a_well_known_host_from_the_environment_takes_its_providers_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", "https://api.anthropic.com")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    endpoint = configured_endpoint()
    assert endpoint.api == "anthropic"
    assert (endpoint.api_key, endpoint.api_key_source) == (ANTHROPIC_KEY, "ANTHROPIC_API_KEY")


def test_the_api_argument_wins_over_the_host() -> None:
    assert configured_endpoint("https://api.anthropic.com", api="chat").api == "chat"


def test_a_lone_anthropic_key_means_anthropics_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    endpoint = configured_endpoint()
    assert endpoint.api == "anthropic"
    assert endpoint.base_url == "https://api.anthropic.com"
    assert (endpoint.api_key, endpoint.api_key_source) == (ANTHROPIC_KEY, "ANTHROPIC_API_KEY")
    assert "Anthropic's API" in endpoint.base_url_source
    assert "ANTHROPIC_API_KEY" in endpoint.base_url_source


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_a_lone_gemini_or_google_key_means_gemini(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, GEMINI_KEY)
    endpoint = configured_endpoint()
    assert endpoint.api == "gemini"
    assert endpoint.base_url == "https://generativelanguage.googleapis.com"
    assert (endpoint.api_key, endpoint.api_key_source) == (GEMINI_KEY, variable)


def test_both_google_keys_are_one_provider_not_a_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY + "-other")
    endpoint = configured_endpoint()
    assert endpoint.api == "gemini"
    # As google-genai reads them: GOOGLE_API_KEY first.
    assert (endpoint.api_key, endpoint.api_key_source) == (GEMINI_KEY + "-other", "GOOGLE_API_KEY")


def test_openai_key_wins_over_an_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    endpoint = configured_endpoint()
    assert endpoint.api == "chat"
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert (endpoint.api_key, endpoint.api_key_source) == (OPENAI_KEY, "OPENAI_API_KEY")


def test_the_responses_api_takes_openais_key_and_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    endpoint = configured_endpoint(api="responses")
    assert (endpoint.api, endpoint.base_url) == ("responses", "https://api.openai.com/v1")
    assert (endpoint.api_key, endpoint.api_key_source) == (OPENAI_KEY, "OPENAI_API_KEY")


def test_anthropic_and_gemini_keys_without_openai_ask_which(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    with pytest.raises(ConfigurationError) as caught:
        configured_endpoint()
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message and "GEMINI_API_KEY" in message
    assert "api=" in message and "JUPYTER_STREAM_API" in message  # the fix
    assert ANTHROPIC_KEY not in message and GEMINI_KEY not in message
    # The fix works: naming the API picks its key.
    chosen = configured_endpoint(api="gemini")
    assert (chosen.api, chosen.api_key) == ("gemini", GEMINI_KEY)
    monkeypatch.setenv("JUPYTER_STREAM_API", "anthropic")
    chosen = configured_endpoint()
    assert (chosen.api, chosen.api_key) == ("anthropic", ANTHROPIC_KEY)
    assert chosen.base_url == "https://api.anthropic.com"


def test_another_providers_key_never_goes_to_a_base_url_of_another_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    local = configured_endpoint("http://localhost:8000/v1")
    assert (local.api, local.api_key) == ("chat", None)
    assert configured_endpoint("http://localhost:8000", api="anthropic").api_key == ANTHROPIC_KEY
    assert configured_endpoint("http://localhost:11434", api="ollama").api_key is None


@pytest.mark.parametrize("api", NATIVE)
def test_an_api_alone_is_the_embedded_server_speaking_it(api: str) -> None:
    endpoint = configured_endpoint(api=api)
    assert endpoint.embedded and endpoint.api == api and endpoint.api_key is None


def test_the_embedded_server_is_started_at_each_apis_root() -> None:
    chat = resolve_endpoint()
    anthropic = resolve_endpoint(api="anthropic")
    assert chat.api == "chat" and chat.base_url.endswith("/v1")
    assert anthropic.api == "anthropic"
    assert anthropic.base_url == chat.base_url.removesuffix("/v1")  # the host, as the SDK's


@pytest.mark.parametrize("api", ["claude", "openai", "", "Anthropic"])
def test_an_unknown_api_lists_the_names(api: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        configured_endpoint(api=api)
    message = str(caught.value)
    assert repr(api) in message
    for name in FORMATS:
        assert repr(name) in message


def test_an_unknown_jupyter_stream_api_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_STREAM_API", "claude")
    with pytest.raises(ConfigurationError, match=r"^JUPYTER_STREAM_API: api='claude'") as caught:
        configured_endpoint()
    assert "'anthropic'" in str(caught.value)


def test_keys_are_never_in_reprs_or_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    endpoint = configured_endpoint()
    assert ANTHROPIC_KEY not in repr(endpoint) and ANTHROPIC_KEY not in str(endpoint)
    assert "api='anthropic'" in repr(endpoint)
    session = ChatSession(api="anthropic", api_key=GEMINI_KEY)
    assert GEMINI_KEY not in repr(session) and "api='anthropic'" in repr(session)
    monkeypatch.setenv("ANTHROPIC_API_KEY", f"{ANTHROPIC_KEY} with a space")
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY") as caught:
        configured_endpoint()
    assert ANTHROPIC_KEY not in str(caught.value)
    frames = traceback.walk_tb(caught.value.__traceback__)  # %xmode Verbose would show them
    assert not any(ANTHROPIC_KEY in repr(frame.f_locals) for frame, _ in frames)


def test_a_session_checks_its_api_at_once_and_gives_it_to_every_turn() -> None:
    with pytest.raises(ConfigurationError, match="'anthropic'"):
        ChatSession(api="claude")
    assert ChatSession(api="gemini").api == "gemini"
    assert ChatSession().api is None


# -- each API's own base URL variable, and what chose the API -----------------------------------


def test_openai_base_url_never_takes_another_providers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    for api, root in (
        ("anthropic", "https://api.anthropic.com"),
        ("gemini", "https://generativelanguage.googleapis.com"),
    ):
        endpoint = configured_endpoint(api=api)
        assert endpoint.base_url == root, api
    assert configured_endpoint(api="responses").base_url == "https://api.openai.com/v1"


def test_each_api_reads_its_own_sdks_base_url_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://anthropic-proxy.example")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://gemini-proxy.example")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    endpoint = configured_endpoint()  # a lone Anthropic key: its API, at its SDK's base URL
    assert (endpoint.api, endpoint.base_url) == ("anthropic", "https://anthropic-proxy.example")
    assert endpoint.base_url_source == "ANTHROPIC_BASE_URL"
    assert configured_endpoint(api="gemini").base_url == "https://gemini-proxy.example"
    monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", "http://any.example:8000")  # any API's
    assert configured_endpoint(api="gemini").base_url == "http://any.example:8000"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11435", "http://127.0.0.1:11435"),
        ("gpu-box", "http://gpu-box:11434"),
        ("https://ollama.example", "https://ollama.example:11434"),
        ("http://localhost:11434/", "http://localhost:11434"),
    ],
)
def test_ollama_host_as_the_ollama_library_reads_it(
    monkeypatch: pytest.MonkeyPatch, value: str, url: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    endpoint = configured_endpoint(api="ollama")
    assert (endpoint.base_url, endpoint.base_url_source) == (url, "OLLAMA_HOST")
    assert configured_endpoint().api == "chat"  # OLLAMA_HOST alone chooses nothing


@pytest.mark.parametrize(
    "url",
    [
        "https://generativelanguage.googleapis.com/v1beta/openai/",  # Gemini's OpenAI-compatible
        "https://api.anthropic.com/v1",  # Anthropic's OpenAI SDK compatibility
    ],
)
def test_a_providers_openai_compatible_path_is_chat(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    endpoint = configured_endpoint(url)
    assert endpoint.api == "chat"
    assert (endpoint.api_key, endpoint.api_key_source) == (OPENAI_KEY, "OPENAI_API_KEY")


def test_the_endpoint_says_what_chose_its_api(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configured_endpoint().api_source == "the default"
    assert configured_endpoint(api="gemini").api_source == "api argument"
    assert configured_endpoint("https://api.anthropic.com").api_source == "the base URL's host"
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    assert configured_endpoint().api_source == "its key alone is set (ANTHROPIC_API_KEY)"
    monkeypatch.setenv("JUPYTER_STREAM_API", "ollama")
    assert configured_endpoint().api_source == "JUPYTER_STREAM_API"
